package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func counter(labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "things_total", Help: "Things."}, labels)
}

func TestRegisterReusesTheExistingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := Register(reg, counter("kind"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, counter("kind"))
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	if first != second {
		t.Fatal("second registration returned a new collector, not the registered one")
	}
	second.WithLabelValues("a").Inc()
	if got := testutil.ToFloat64(first.WithLabelValues("a")); got != 1 {
		t.Fatalf("count seen through the first collector = %v, want 1", got)
	}
}

func TestRegisterReportsAConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, counter("kind")); err != nil {
		t.Fatal(err)
	}
	got, err := Register(reg, counter("other"))
	if err == nil {
		t.Fatal("same name with other labels registered without error")
	}
	if got != nil {
		t.Fatalf("a failed registration returned %v, want nil", got)
	}
}

func TestRegisterExistingOfAnotherType(t *testing.T) {
	// A plain Counter registered first, then a CounterVec with the same
	// descriptor: the existing collector is not a *CounterVec, so the
	// caller gets the error rather than a collector it cannot use.
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "things_total", Help: "Things."})); err != nil {
		t.Fatal(err)
	}
	if _, err := Register(reg, counter()); err == nil {
		t.Fatal("a collector of another type was accepted as the existing one")
	}
}
