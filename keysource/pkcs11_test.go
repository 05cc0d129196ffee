//go:build cgo

package keysource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/miekg/pkcs11"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/signer"
)

// softhsmKey creates a key pair for alg on the test token and returns its
// configuration entry.
func softhsmKey(t *testing.T, alg jose.SignatureAlgorithm) config.Key {
	t.Helper()
	h := testenv.StartSoftHSM(t)
	tok := config.PKCS11Key{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: h.KeyLabel(t, string(alg)), PinFile: h.PINFile}
	id, err := GeneratePKCS11(GeneratePKCS11Request{Alg: alg, Token: tok}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok.KeyID = id
	return config.Key{ID: "hsm-" + string(alg), Alg: string(alg), PKCS11: &tok}
}

// TestPKCS11SignsEveryAlgorithm signs with RS256, PS256, ES256 and ES384
// keys made on SoftHSM and verifies each JWS with jwx, an independent JOSE
// library: in particular the ECDSA signatures, which the token returns as
// DER, must arrive as JWS's R||S.
func TestPKCS11SignsEveryAlgorithm(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384} {
		t.Run(string(alg), func(t *testing.T) {
			kc := softhsmKey(t, alg)
			k, err := Open(context.Background(), kc, Options{Sessions: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			if !k.Remote() || k.Alg != alg || k.ID != kc.ID {
				t.Fatalf("key = %v remote=%v", k, k.Remote())
			}
			if _, err := k.PrivatePEM(); err == nil {
				t.Error("PrivatePEM of an HSM key succeeded")
			}
			sg, err := Signer(k, kc, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			// Several at once, through the session pool.
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					payload := fmt.Appendf(nil, `{"jti":"%d"}`, i)
					compact, err := sg.Sign(payload, true)
					if err != nil {
						t.Error(err)
						return
					}
					got, err := jws.Verify([]byte(compact), jws.WithKey(jwa.SignatureAlgorithm(mustJWXAlg(t, alg)), k.Public()))
					if err != nil || string(got) != string(payload) {
						t.Errorf("jwx does not verify the %s JWS: %v", alg, err)
					}
				}()
			}
			wg.Wait()
		})
	}
}

func mustJWXAlg(t *testing.T, alg jose.SignatureAlgorithm) jwa.SignatureAlgorithm {
	a, ok := jwa.LookupSignatureAlgorithm(string(alg))
	if !ok {
		t.Fatalf("jwx has no %s", alg)
	}
	return a
}

// TestPKCS11KeyIsNotExtractable shows the private key made by
// GeneratePKCS11 (what `keys generate --pkcs11` runs) cannot leave the
// token.
func TestPKCS11KeyIsNotExtractable(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		kc := softhsmKey(t, alg)
		sensitive, extractable, err := PrivateKeyAttributes(kc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !sensitive || extractable {
			t.Errorf("%s private key: CKA_SENSITIVE=%v CKA_EXTRACTABLE=%v, want true/false", alg, sensitive, extractable)
		}
	}
}

// TestPKCS11AlgMismatch: an EC key configured as RS256 fails at open with
// a message naming both, and never signs.
func TestPKCS11AlgMismatch(t *testing.T) {
	kc := softhsmKey(t, jose.ES256)
	kc.Alg = "RS256"
	_, err := Open(context.Background(), kc, Options{})
	if !errors.Is(err, signer.ErrKeyMismatch) || !strings.Contains(err.Error(), "RS256 needs an RSA key, got EC P-256") {
		t.Fatalf("err = %v, want a key mismatch naming RS256 and EC P-256", err)
	}
}

// TestPKCS11OpenErrors: a wrong PIN, a missing key and a missing PIN
// variable each say what is wrong without echoing the PIN.
func TestPKCS11OpenErrors(t *testing.T) {
	h := testenv.StartSoftHSM(t)
	base := config.PKCS11Key{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: "no-such-key", PinFile: h.PINFile}
	if _, err := Open(context.Background(), config.Key{ID: "x", PKCS11: &base}, Options{}); err == nil || !strings.Contains(err.Error(), "no key pair") {
		t.Errorf("missing key: %v", err)
	}
	env := base
	env.PinFile, env.PinEnv = "", "SETRELAY_TEST_PIN_UNSET"
	if _, err := Open(context.Background(), config.Key{ID: "x", PKCS11: &env}, Options{LookupEnv: func(string) (string, bool) { return "", false }}); err == nil || !strings.Contains(err.Error(), "SETRELAY_TEST_PIN_UNSET is not set") {
		t.Errorf("missing PIN variable: %v", err)
	}
	wrong := base
	wrong.PinFile, wrong.PinEnv = "", "PIN"
	_, err := Open(context.Background(), config.Key{ID: "x", PKCS11: &wrong}, Options{LookupEnv: func(string) (string, bool) { return "9999-wrong-pin", true }})
	if err == nil || !strings.Contains(err.Error(), "CKR_PIN_INCORRECT") || strings.Contains(err.Error(), "9999-wrong-pin") {
		t.Errorf("wrong PIN: %v", err)
	}
}

// TestPKCS11BusyIsTransient: with one session and a wait bound far below
// a signature's time, callers that find no free session get ErrTransient
// (the worker retries them), never a hang or an unclassified error.
func TestPKCS11BusyIsTransient(t *testing.T) {
	kc := softhsmKey(t, jose.RS256)
	o := Options{Sessions: 1, CallTimeout: 5 * time.Millisecond}
	k, err := Open(context.Background(), kc, o)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	sg, err := Signer(k, kc, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	var ok, busy atomic.Int64
	// Whether two callers ever overlap is up to the scheduler: a loaded
	// machine may run them one after another. Go round until both
	// outcomes have been seen, within a bound.
	for round := 0; round < 50 && (ok.Load() == 0 || busy.Load() == 0); round++ {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					_, err := sg.Sign([]byte(`{}`), true)
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, signer.ErrTransient):
						busy.Add(1)
					default:
						t.Errorf("unclassified: %v", err)
					}
				}
			}()
		}
		wg.Wait()
	}
	if busy.Load() == 0 || ok.Load() == 0 {
		t.Errorf("%d signed, %d busy: want both", ok.Load(), busy.Load())
	}
}

// TestClassifyPKCS11 maps token return values to the worker's classes.
func TestClassifyPKCS11(t *testing.T) {
	for code, want := range map[pkcs11.Error]error{
		pkcs11.CKR_SESSION_HANDLE_INVALID:     signer.ErrTransient,
		pkcs11.CKR_DEVICE_ERROR:               signer.ErrTransient,
		pkcs11.CKR_FUNCTION_FAILED:            signer.ErrTransient,
		pkcs11.CKR_KEY_HANDLE_INVALID:         signer.ErrKeyUnusable,
		pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED: signer.ErrKeyUnusable,
		pkcs11.CKR_USER_NOT_LOGGED_IN:         signer.ErrKeyUnusable,
	} {
		err := classifyPKCS11(fmt.Errorf("sign: %w", code))
		if !errors.Is(err, want) {
			t.Errorf("%v classified as %v, want %v", code, err, want)
		}
	}
	if err := classifyPKCS11(errors.New("odd")); errors.Is(err, signer.ErrTransient) || errors.Is(err, signer.ErrKeyUnusable) {
		t.Errorf("an unknown error was classified: %v", err)
	}
}

// closeAllSessions does underneath crypto11 what an HSM restart or a
// dropped network-HSM connection does: it closes every session this
// process has on the token (which also logs the token out), through a
// second handle on the same module.
func closeAllSessions(t *testing.T, module, tokenLabel string) {
	t.Helper()
	p := pkcs11.New(module)
	if p == nil {
		t.Fatalf("load %s", module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, slot := range slots {
		ti, err := p.GetTokenInfo(slot)
		if err == nil && ti.Label == tokenLabel {
			if err := p.CloseAllSessions(slot); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no token %q", tokenLabel)
}

// TestPKCS11RecoversLostSessions: after every session on the token is
// closed underneath the key (an HSM restart), concurrent signers get
// their signatures (the key reopens its context once, not once per
// signer), and the token keeps signing afterwards. Without the reopen,
// crypto11 hands the dead sessions out forever.
func TestPKCS11RecoversLostSessions(t *testing.T) {
	h := testenv.StartSoftHSM(t)
	kc := softhsmKey(t, jose.ES256)
	o := Options{Sessions: 4}.withDefaults()
	pk, err := openPKCS11Key(kc.PKCS11, o)
	if err != nil {
		t.Fatal(err)
	}
	k, err := signer.NewRemoteKey(pk, kc.ID, jose.ES256, pk)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	sg, err := Signer(k, kc, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	sign := func() error {
		compact, err := sg.Sign([]byte(`{"jti":"x"}`), true)
		if err != nil {
			return err
		}
		_, err = jws.Verify([]byte(compact), jws.WithKey(jwa.ES256(), k.Public()))
		return err
	}
	// Warm every pooled session, so that all of them are lost below.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := sign(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	for round := range 2 {
		closeAllSessions(t, h.Module, h.TokenLabel)
		var failed atomic.Int64
		for range 8 {
			wg.Go(func() {
				if err := sign(); err != nil {
					failed.Add(1)
					t.Logf("round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
		if failed.Load() != 0 {
			t.Errorf("round %d: %d of 8 signatures failed after the sessions were lost", round, failed.Load())
		}
		for i := range 5 {
			if err := sign(); err != nil {
				t.Fatalf("round %d: signature %d after the recovery: %v", round, i, err)
			}
		}
	}
	if n := pk.reopens.Load(); n != 2 {
		t.Errorf("%d reopens for 2 session losses, want 2 (one per loss, not one per signer)", n)
	}
}

// TestNeedsReopen: lost sessions and logins reopen; a key that may not
// sign, or a busy token, does not.
func TestNeedsReopen(t *testing.T) {
	for code, want := range map[uint]bool{
		pkcs11.CKR_SESSION_HANDLE_INVALID:     true,
		pkcs11.CKR_SESSION_CLOSED:             true,
		pkcs11.CKR_DEVICE_REMOVED:             true,
		pkcs11.CKR_TOKEN_NOT_PRESENT:          true,
		pkcs11.CKR_USER_NOT_LOGGED_IN:         true,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:   true,
		pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED: false,
		pkcs11.CKR_SESSION_COUNT:              false,
		pkcs11.CKR_PIN_LOCKED:                 false,
	} {
		if got := needsReopen(fmt.Errorf("sign: %w", pkcs11.Error(code))); got != want {
			t.Errorf("needsReopen(%v) = %v, want %v", pkcs11.Error(code), got, want)
		}
	}
}

// TestPKCS11RefusedPINBlocksWithoutRelogin: the PIN is changed under a
// running relay (the pin file now holds a wrong one) and the token then
// loses its sessions, so the key must log in again. The refused PIN makes
// the key unusable (the worker blocks its receivers and keeps their
// SETs), not transient; later signatures do not log in with the same
// refused PIN again, since a token locks the user PIN after a few failed
// logins; no error shows the PIN; once the file holds the right PIN the
// key signs again without a restart.
func TestPKCS11RefusedPINBlocksWithoutRelogin(t *testing.T) {
	h := testenv.StartSoftHSM(t)
	kc := softhsmKey(t, jose.ES256)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(h.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc.PKCS11.PinFile = pinFile
	o := Options{Sessions: 2}.withDefaults()
	pk, err := openPKCS11Key(kc.PKCS11, o)
	if err != nil {
		t.Fatal(err)
	}
	k, err := signer.NewRemoteKey(pk, kc.ID, jose.ES256, pk)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	sg, err := Signer(k, kc, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sg.Sign([]byte(`{}`), true); err != nil {
		t.Fatal(err)
	}

	const wrongPIN = "0000-wrong-pin"
	if err := os.WriteFile(pinFile, []byte(wrongPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closeAllSessions(t, h.Module, h.TokenLabel)
	_, err = sg.Sign([]byte(`{}`), true)
	if !errors.Is(err, signer.ErrKeyUnusable) || errors.Is(err, signer.ErrTransient) {
		t.Fatalf("sign after the PIN was changed: %v, want ErrKeyUnusable only", err)
	}
	if strings.Contains(err.Error(), wrongPIN) || strings.Contains(err.Error(), h.PIN) || !strings.Contains(err.Error(), pinFile) {
		t.Errorf("error shows a PIN or does not name the pin file: %v", err)
	}
	logins := pk.logins.Load()
	if logins == 0 {
		t.Fatal("no login was attempted: the test proves nothing")
	}
	// Past the reopen cooldown, as a blocked receiver's probe would come.
	for range 3 {
		time.Sleep(reopenCooldown + 100*time.Millisecond)
		if _, err := sg.Sign([]byte(`{}`), true); !errors.Is(err, signer.ErrKeyUnusable) {
			t.Fatalf("probe with the refused PIN unchanged: %v", err)
		}
	}
	if n := pk.logins.Load(); n != logins {
		t.Errorf("%d more logins with the PIN the token refused", n-logins)
	}

	if err := os.WriteFile(pinFile, []byte(h.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(reopenCooldown + 100*time.Millisecond)
	compact, err := sg.Sign([]byte(`{"jti":"fixed"}`), true)
	if err != nil {
		t.Fatalf("sign after the PIN file was fixed: %v", err)
	}
	if _, err := jws.Verify([]byte(compact), jws.WithKey(jwa.ES256(), k.Public())); err != nil {
		t.Fatal(err)
	}
}

// TestPKCS11PS256SaltIsHashSized: a PS256 signature made by the token
// (crypto11 passes CKM_SHA256_RSA_PKCS_PSS parameters with sLen from the
// options) carries the 32-byte salt RFC 7518 section 3.5 requires.
func TestPKCS11PS256SaltIsHashSized(t *testing.T) {
	compact, pub := signPS256(t, softhsmKey(t, jose.PS256))
	if err := verifyPSSStrict(t, compact, pub); err != nil {
		t.Errorf("SoftHSM PS256 signature without a 32-byte salt: %v", err)
	}
}
