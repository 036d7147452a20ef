package functions

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/mux"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// deployment is a function's Deployment with `ready` available replicas of `replicas`.
func deployment(name string, replicas, ready int32, labels map[string]string) *appsv1.Deployment {
	template := map[string]string{FunctionLabel: name}
	for k, v := range labels {
		template[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: map[string]string{FunctionLabel: name},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: template}},
		},
		Status: appsv1.DeploymentStatus{AvailableReplicas: ready},
	}
}

var zeroAfter5s = map[string]string{ScaleZeroLabel: "true", ScaleZeroDurationLabel: "5s"}

func testIdler(t *testing.T, objects ...*appsv1.Deployment) (*Idler, *fake.Clientset, *clock) {
	t.Helper()
	client := fake.NewClientset()
	for _, d := range objects {
		if _, err := client.AppsV1().Deployments(ns).Create(
			context.Background(), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c := &clock{t: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
	return &Idler{
		Client: client, Namespace: ns, Activity: NewActivity(c.now),
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}, client, c
}

func replicasOf(t *testing.T, client *fake.Clientset, name string) int32 {
	t.Helper()
	d, err := client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

func reconcile(t *testing.T, i *Idler) []string {
	t.Helper()
	scaled, err := i.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return scaled
}

func TestZeroAfterReadsTheLabels(t *testing.T) {
	cases := []struct {
		labels map[string]string
		want   time.Duration
		on     bool
		bad    bool
	}{
		{map[string]string{}, 0, false, false},
		{map[string]string{ScaleZeroLabel: "false", ScaleZeroDurationLabel: "5s"}, 0, false, false},
		{zeroAfter5s, 5 * time.Second, true, false},
		{map[string]string{ScaleZeroLabel: "true", ScaleZeroDurationLabel: "15m"}, 15 * time.Minute, true, false},
		{map[string]string{ScaleZeroLabel: "true", ScaleZeroDurationLabel: "7"}, 7 * time.Second, true, false},
		{map[string]string{ScaleZeroLabel: "true"}, 0, false, true},
		{map[string]string{ScaleZeroLabel: "true", ScaleZeroDurationLabel: "soon"}, 0, false, true},
		{map[string]string{ScaleZeroLabel: "true", ScaleZeroDurationLabel: "-1s"}, 0, false, true},
	}
	for _, c := range cases {
		got, on, err := ZeroAfter(c.labels)
		if got != c.want || on != c.on || (err != nil) != c.bad {
			t.Errorf("ZeroAfter(%v) = %v, %v, %v; want %v, %v, error %v",
				c.labels, got, on, err, c.want, c.on, c.bad)
		}
	}
}

func TestIdlerScalesOnlyLabelledIdleFunctionsToZero(t *testing.T) {
	i, client, c := testIdler(t,
		deployment("search", 1, 1, zeroAfter5s),
		deployment("transcribe", 1, 1, nil),                                      // not labelled: never idled
		deployment("cut-clips", 1, 1, map[string]string{ScaleZeroLabel: "true"}), // no duration
	)
	// First sight starts every clock: nothing goes down at once, even after a provider restart.
	if got := reconcile(t, i); len(got) != 0 {
		t.Fatalf("scaled %v on first sight", got)
	}
	c.advance(4 * time.Second)
	if got := reconcile(t, i); len(got) != 0 {
		t.Fatalf("scaled %v before the idle duration", got)
	}
	c.advance(1 * time.Second)
	if got := reconcile(t, i); len(got) != 1 || got[0] != "search" {
		t.Fatalf("scaled %v, want [search]", got)
	}
	for name, want := range map[string]int32{"search": 0, "transcribe": 1, "cut-clips": 1} {
		if got := replicasOf(t, client, name); got != want {
			t.Errorf("%s: replicas %d, want %d", name, got, want)
		}
	}
	c.advance(time.Hour)
	if got := reconcile(t, i); len(got) != 0 {
		t.Fatalf("scaled %v again although search is at zero", got)
	}
}

func TestIdlerKeepsAFunctionWithAnInvocationInFlight(t *testing.T) {
	i, client, c := testIdler(t, deployment("transcribe", 1, 1, zeroAfter5s))
	reconcile(t, i)
	entered, release := make(chan struct{}), make(chan struct{})
	slow := i.Activity.Wrap(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusOK)
	})
	r := mux.NewRouter()
	r.HandleFunc("/function/{name}", slow)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost,
			"/function/transcribe.openfaas-fn", http.NoBody))
	}()
	<-entered
	c.advance(time.Minute)
	if got := reconcile(t, i); len(got) != 0 {
		t.Fatalf("scaled %v while an invocation was in flight", got)
	}
	close(release)
	<-done
	// The clock restarts when the invocation ends, not when it began.
	c.advance(4 * time.Second)
	if got := reconcile(t, i); len(got) != 0 {
		t.Fatalf("scaled %v 4 s after the invocation ended", got)
	}
	c.advance(time.Second)
	if got := reconcile(t, i); len(got) != 1 {
		t.Fatalf("not scaled 5 s after the invocation ended: %v", got)
	}
	if got := replicasOf(t, client, "transcribe"); got != 0 {
		t.Fatalf("replicas %d, want 0", got)
	}
}

func TestIdlerWaitsForAStartingReplicaToBeReady(t *testing.T) {
	// Scaled up from zero (by the gateway) but its pod not ready yet: taking it away would
	// leave the gateway's waiting request without a replica.
	i, client, c := testIdler(t, deployment("detect-objects", 1, 0, zeroAfter5s))
	reconcile(t, i)
	c.advance(30 * time.Second)
	if got := reconcile(t, i); len(got) != 0 {
		t.Fatalf("scaled %v while its replica was starting", got)
	}
	d, _ := client.AppsV1().Deployments(ns).Get(context.Background(), "detect-objects",
		metav1.GetOptions{})
	d.Status.AvailableReplicas = 1
	if _, err := client.AppsV1().Deployments(ns).Update(context.Background(), d,
		metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.advance(4 * time.Second)
	if got := reconcile(t, i); len(got) != 0 {
		t.Fatalf("scaled %v within 5 s of the replica being ready", got)
	}
	c.advance(2 * time.Second)
	if got := reconcile(t, i); len(got) != 1 {
		t.Fatalf("not scaled once idle for 5 s after ready: %v", got)
	}
}

func TestScaleUpThroughTheProviderRestartsTheIdleClock(t *testing.T) {
	p, client := testProvider()
	c := &clock{t: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
	p.Activity = NewActivity(c.now)
	if _, err := client.AppsV1().Deployments(ns).Create(context.Background(),
		deployment("search", 0, 0, zeroAfter5s), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Activity.Idle("search") // seen long ago
	c.advance(time.Hour)
	w := call(t, router(p), http.MethodPost, "/system/scale-function/search",
		map[string]any{"serviceName": "search", "replicas": 1})
	if w.Code != http.StatusAccepted {
		t.Fatalf("scale: %d %s", w.Code, w.Body.String())
	}
	if idle := p.Activity.Idle("search"); idle != 0 {
		t.Fatalf("idle %v right after a scale-up, want 0", idle)
	}
}
