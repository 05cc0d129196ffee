package keysource

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/signer"
)

// awsKMSAPI is the part of the KMS client a key uses.
type awsKMSAPI interface {
	Sign(ctx context.Context, in *kms.SignInput, opts ...func(*kms.Options)) (*kms.SignOutput, error)
}

// awsKey is a KMS asymmetric key as a crypto.Signer. Sign calls run in
// parallel: the SDK client is safe for concurrent use and nothing here
// holds a lock, so throughput is concurrency divided by KMS latency.
type awsKey struct {
	client  awsKMSAPI
	arn     string
	pub     crypto.PublicKey
	timeout time.Duration
}

func (k *awsKey) Public() crypto.PublicKey { return k.pub }

// Sign signs a digest with MessageType DIGEST, so only the hash crosses the
// network. ECDSA signatures come back as DER, as crypto.Signer promises.
func (k *awsKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	spec, err := awsSigningAlgorithm(k.pub, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
	defer cancel()
	out, err := k.client.Sign(ctx, &kms.SignInput{
		KeyId:            aws.String(k.arn),
		Message:          digest,
		MessageType:      types.MessageTypeDigest,
		SigningAlgorithm: spec,
	})
	if err != nil {
		return nil, signFailure("kms", classifyAWS(err))
	}
	return out.Signature, nil
}

// awsSigningAlgorithm maps a key type and crypto.SignerOpts to KMS's
// signing algorithm.
func awsSigningAlgorithm(pub crypto.PublicKey, opts crypto.SignerOpts) (types.SigningAlgorithmSpec, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		_, pss := opts.(*rsa.PSSOptions)
		switch {
		case opts.HashFunc() == crypto.SHA256 && pss:
			return types.SigningAlgorithmSpecRsassaPssSha256, nil
		case opts.HashFunc() == crypto.SHA256:
			return types.SigningAlgorithmSpecRsassaPkcs1V15Sha256, nil
		}
	case *ecdsa.PublicKey:
		switch {
		case p.Curve == elliptic.P256() && opts.HashFunc() == crypto.SHA256:
			return types.SigningAlgorithmSpecEcdsaSha256, nil
		case p.Curve == elliptic.P384() && opts.HashFunc() == crypto.SHA384:
			return types.SigningAlgorithmSpecEcdsaSha384, nil
		}
	}
	return "", fmt.Errorf("%w: no KMS signing algorithm for this key with %v", signer.ErrKeyMismatch, opts.HashFunc())
}

// classifyAWS wraps a KMS error with the class the worker acts on. The
// error text is KMS's (key ARN, request id), never credentials.
func classifyAWS(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ThrottlingException", "Throttling", "LimitExceededException", "RequestLimitExceeded",
			"KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException",
			"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure":
			return fmt.Errorf("%w: %w", signer.ErrTransient, err)
		case "DisabledException", "KMSInvalidStateException", "NotFoundException",
			"AccessDeniedException", "AccessDenied", "InvalidKeyUsageException", "IncorrectKeyException",
			"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
			"InvalidSignatureException", "InvalidArnException":
			return fmt.Errorf("%w: %w", signer.ErrKeyUnusable, err)
		}
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() >= 500 {
		return fmt.Errorf("%w: %w", signer.ErrTransient, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", signer.ErrTransient, err)
	}
	return err
}

// newAWSClient builds a KMS client from the standard credential chain,
// keeping up to conns connections to KMS alive: one per concurrent
// signature, so a busy worker pool does not pay a TLS handshake per SET
// (the SDK's default keeps 10).
func newAWSClient(ctx context.Context, region, endpoint string, conns int) (*kms.Client, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = max(conns, awshttp.DefaultHTTPTransportMaxIdleConnsPerHost)
	})
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithHTTPClient(httpClient)}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	// Three attempts in the SDK smooth over a blip; anything longer is
	// the worker's backoff, which does not hold a message meanwhile.
	opts = append(opts, awsconfig.WithRetryMaxAttempts(3))
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("kms: no AWS region: set keys[].kms.region or AWS_REGION")
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

// openAWS reads the key's metadata and public key once: DescribeKey (it
// must be an enabled SIGN_VERIFY key) and GetPublicKey.
func openAWS(ctx context.Context, kc config.Key, o Options) (*signer.Key, error) {
	m := kc.KMS
	client, err := newAWSClient(ctx, m.Region, m.Endpoint, o.Sessions)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*o.CallTimeout)
	defer cancel()
	desc, err := client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(m.KeyID)})
	if err != nil {
		return nil, fmt.Errorf("kms DescribeKey %s: %w (check the key id and region, and that this role may call kms:DescribeKey)", m.KeyID, classifyAWS(err))
	}
	md := desc.KeyMetadata
	arn := aws.ToString(md.Arn)
	if md.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("kms key %s has key usage %s; setrelay needs an asymmetric SIGN_VERIFY key (create one with `setrelay keys generate --kms`)", arn, md.KeyUsage)
	}
	if md.KeyState != types.KeyStateEnabled {
		fix := "enable it (aws kms enable-key)"
		if md.KeyState == types.KeyStatePendingDeletion {
			// enable-key fails on a key pending deletion.
			fix = "cancel its deletion (aws kms cancel-key-deletion), then enable it (aws kms enable-key)"
		}
		return nil, fmt.Errorf("%w: kms key %s is %s; %s or configure another key", signer.ErrKeyUnusable, arn, md.KeyState, fix)
	}
	pk, err := client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("kms GetPublicKey %s: %w (this role needs kms:GetPublicKey)", arn, classifyAWS(err))
	}
	pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kms key %s has key spec %s, which no JWS algorithm setrelay signs with takes (%w); use an RSA_2048 or larger key (RS256, PS256), ECC_NIST_P256 (ES256) or ECC_NIST_P384 (ES384)", arn, md.KeySpec, err)
	}
	k, err := signer.NewRemoteKey(&awsKey{client: client, arn: arn, pub: pub, timeout: o.CallTimeout}, kc.ID, jose.SignatureAlgorithm(kc.Alg), nil)
	if err != nil {
		return nil, fmt.Errorf("kms key %s (%s): %w", arn, pk.KeySpec, err)
	}
	// The key type fits alg; KMS must also offer the algorithm for it.
	opts, err := signer.SignerOpts(k.Alg)
	if err != nil {
		return nil, err
	}
	want, err := awsSigningAlgorithm(pub, opts)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(pk.SigningAlgorithms, want) {
		return nil, fmt.Errorf("%w: kms key %s does not offer %s for %s (it offers %v)", signer.ErrKeyMismatch, arn, want, k.Alg, pk.SigningAlgorithms)
	}
	return k, nil
}

// KMSKeySpec is the AWS KeySpec that holds a key for alg.
func KMSKeySpec(alg jose.SignatureAlgorithm) (types.KeySpec, error) {
	switch alg {
	case jose.RS256, jose.PS256:
		return types.KeySpecRsa2048, nil
	case jose.ES256:
		return types.KeySpecEccNistP256, nil
	case jose.ES384:
		return types.KeySpecEccNistP384, nil
	}
	return "", fmt.Errorf("%w: %s has no KMS key spec (use RS256, PS256, ES256 or ES384)", signer.ErrUnsupportedAlgorithm, alg)
}

// GenerateKMSRequest describes a new KMS key.
type GenerateKMSRequest struct {
	Alg         jose.SignatureAlgorithm
	Region      string
	Endpoint    string
	Description string
	// Alias, if set, is created for the key ("alias/" is added if missing).
	Alias string
}

// GenerateKMS creates an asymmetric SIGN_VERIFY key of the spec alg needs
// (RSA_2048, ECC_NIST_P256, ECC_NIST_P384) and returns its ARN. The caller
// needs kms:CreateKey (and kms:CreateAlias for an alias).
func GenerateKMS(ctx context.Context, r GenerateKMSRequest) (arn string, err error) {
	spec, err := KMSKeySpec(r.Alg)
	if err != nil {
		return "", err
	}
	client, err := newAWSClient(ctx, r.Region, r.Endpoint, 1)
	if err != nil {
		return "", err
	}
	out, err := client.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:     spec,
		KeyUsage:    types.KeyUsageTypeSignVerify,
		Description: aws.String(r.Description),
	})
	if err != nil {
		return "", fmt.Errorf("kms CreateKey: %w", err)
	}
	arn = aws.ToString(out.KeyMetadata.Arn)
	if r.Alias != "" {
		alias := r.Alias
		if len(alias) < 6 || alias[:6] != "alias/" {
			alias = "alias/" + alias
		}
		if _, err := client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(arn)}); err != nil {
			return arn, fmt.Errorf("kms CreateAlias %s for %s: %w", alias, arn, err)
		}
	}
	return arn, nil
}
