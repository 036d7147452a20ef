package functions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// The labels OpenFaaS Pro's faas-idler reads; CE has no idler, so this provider is one.
const (
	ScaleZeroLabel         = "com.openfaas.scale.zero"
	ScaleZeroDurationLabel = "com.openfaas.scale.zero-duration"
)

// Activity is what the provider knows of each function's use: when it was last busy (an
// invocation it proxied began or ended, or it was scaled up or deployed) and how many of its
// invocations are in flight. The idler judges idleness from it.
type Activity struct {
	Now      func() time.Time
	mu       sync.Mutex
	last     map[string]time.Time
	inflight map[string]int
}

// NewActivity starts with nothing known: a function's clock starts when it is first seen.
func NewActivity(now func() time.Time) *Activity {
	return &Activity{Now: now, last: map[string]time.Time{}, inflight: map[string]int{}}
}

// functionName drops the ".namespace" the gateway may append to a function's name.
func functionName(name string) string {
	base, _, _ := strings.Cut(name, ".")
	return base
}

// Touch restarts the function's idle clock.
func (a *Activity) Touch(name string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last[functionName(name)] = a.Now()
}

func (a *Activity) begin(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name = functionName(name)
	a.inflight[name]++
	a.last[name] = a.Now()
}

func (a *Activity) end(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name = functionName(name)
	if a.inflight[name] > 0 {
		a.inflight[name]--
	}
	a.last[name] = a.Now()
}

// Idle says how long the function has had nothing in flight (0 while busy). A function never
// seen before starts its clock now, so a provider restart never idles a function at once.
func (a *Activity) Idle(name string) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	name = functionName(name)
	now := a.Now()
	last, seen := a.last[name]
	if !seen {
		a.last[name] = now
		return 0
	}
	if a.inflight[name] > 0 {
		return 0
	}
	return now.Sub(last)
}

// Wrap counts the invocations the proxy handler serves (routes with a {name} variable).
func (a *Activity) Wrap(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := mux.Vars(r)["name"]
		if name == "" {
			next(w, r)
			return
		}
		a.begin(name)
		defer a.end(name)
		next(w, r)
	}
}

// ZeroAfter reads a function's scale-to-zero labels: whether it idles to zero and after how
// long. The duration is a Go duration ("5s", "15m", as OpenFaaS Pro's) or whole seconds.
func ZeroAfter(labels map[string]string) (time.Duration, bool, error) {
	if labels[ScaleZeroLabel] != "true" {
		return 0, false, nil
	}
	text := strings.TrimSpace(labels[ScaleZeroDurationLabel])
	if text == "" {
		return 0, false, fmt.Errorf("%s is true but %s is not set", ScaleZeroLabel,
			ScaleZeroDurationLabel)
	}
	if _, err := strconv.Atoi(text); err == nil {
		text += "s"
	}
	d, err := time.ParseDuration(text)
	if err != nil || d <= 0 {
		return 0, false, fmt.Errorf("%s %q is not a positive duration", ScaleZeroDurationLabel,
			labels[ScaleZeroDurationLabel])
	}
	return d, true, nil
}

// Idler scales to zero the functions labelled com.openfaas.scale.zero=true that have been idle
// for their com.openfaas.scale.zero-duration. The gateway's scale-from-zero brings one back on
// its next invocation.
type Idler struct {
	Client    kubernetes.Interface
	Namespace string
	Activity  *Activity
	Log       *slog.Logger
}

// Run reconciles every interval until ctx ends.
func (i *Idler) Run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if _, err := i.Reconcile(ctx); err != nil && ctx.Err() == nil {
				i.Log.Warn("idler_failed", "error", err.Error())
			}
		}
	}
}

// Reconcile scales every function that is due to zero and returns their names.
func (i *Idler) Reconcile(ctx context.Context) ([]string, error) {
	deployments := i.Client.AppsV1().Deployments(i.Namespace)
	list, err := deployments.List(ctx, metav1.ListOptions{LabelSelector: FunctionLabel})
	if err != nil {
		return nil, err
	}
	var scaled []string
	for _, d := range list.Items {
		name := d.Labels[FunctionLabel]
		if name == "" {
			continue
		}
		after, on, err := ZeroAfter(d.Spec.Template.Labels)
		if err != nil {
			i.Log.Warn("idler_label_invalid", "function", name, "error", err.Error())
			continue
		}
		if !on {
			continue
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas == 0 || d.Status.AvailableReplicas == 0 {
			// Down, or still starting: not idle. The clock starts once a replica is ready, so
			// a replica the gateway is waiting for is never taken away before it serves.
			i.Activity.Touch(name)
			continue
		}
		idle := i.Activity.Idle(name)
		if idle < after {
			continue
		}
		done, err := i.scaleToZero(ctx, name, after)
		if err != nil {
			i.Log.Warn("idler_scale_failed", "function", name, "error", err.Error())
			continue
		}
		if done {
			i.Log.Info("function_idled", "function", name, "namespace", i.Namespace,
				"idle_s", idle.Seconds(), "zero_after_s", after.Seconds())
			scaled = append(scaled, name)
		}
	}
	return scaled, nil
}

// scaleToZero writes replicas 0, re-checking idleness on every try: an invocation that began
// since the listing keeps the function up.
func (i *Idler) scaleToZero(ctx context.Context, name string, after time.Duration) (bool, error) {
	deployments := i.Client.AppsV1().Deployments(i.Namespace)
	done := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		done = false
		d, err := deployments.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas == 0 || i.Activity.Idle(name) < after {
			return nil
		}
		zero := int32(0)
		d.Spec.Replicas = &zero
		if _, err := deployments.Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			return err
		}
		done = true
		return nil
	})
	return done, err
}
