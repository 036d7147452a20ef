// Package functions turns OpenFaaS function requests into Kubernetes objects and back, in the
// shape faas-netes (CE) gives them, and serves the faas-provider REST API over client-go.
package functions

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/openfaas/faas-provider/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// FunctionLabel selects a function's pods, Deployment and Service (faas-netes' label).
	FunctionLabel = "faas_function"
	// SecretsMount is where every secret a function names is projected.
	SecretsMount = "/var/openfaas/secrets"
	// HealthPath is the function runtime's health endpoint.
	HealthPath = "/_/health"
	// NonRootUID is the uid of function containers when SetNonRootUser is on.
	NonRootUID int64 = 12000
	// EnvProcessName is the environment variable that carries a request's envProcess.
	EnvProcessName   = "fprocess"
	minReplicasLabel = "com.openfaas.scale.min"
	scrapeAnnotation = "prometheus.io.scrape"
	tempVolume       = "temp"
)

// Config is what the provider's operator chooses (environment of the provider process).
type Config struct {
	Namespace       string            // the default (and CE's only) function namespace
	RuntimePort     int32             // the function container's HTTP port
	HTTPProbe       bool              // httpGet on /_/health; otherwise exec `cat /tmp/.lock`
	SetNonRootUser  bool              // runAsUser NonRootUID in every function container
	ImagePullPolicy corev1.PullPolicy // Always, like faas-netes, unless set
}

// Probe timings are fixed, as faas-netes CE fixes them (the chart's probe values are unread).
const (
	probeInitialDelay = 2
	probeTimeout      = 1
	probePeriod       = 2
	probeFailure      = 3
)

// ValidateName checks a function name is a DNS-1123 label (a Deployment and Service name).
func ValidateName(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("invalid function name %q: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

func buildAnnotations(req types.FunctionDeployment) map[string]string {
	out := map[string]string{}
	if req.Annotations != nil {
		for k, v := range *req.Annotations {
			out[k] = v
		}
	}
	if _, ok := out[scrapeAnnotation]; !ok {
		out[scrapeAnnotation] = "false"
	}
	return out
}

func buildEnv(req types.FunctionDeployment) []corev1.EnvVar {
	env := []corev1.EnvVar{}
	if req.EnvProcess != "" {
		env = append(env, corev1.EnvVar{Name: EnvProcessName, Value: req.EnvProcess})
	}
	for k, v := range req.EnvVars {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	sort.SliceStable(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	return env
}

func resourceList(r *types.FunctionResources) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	if r == nil {
		return out, nil
	}
	for name, value := range map[corev1.ResourceName]string{
		corev1.ResourceMemory: r.Memory,
		corev1.ResourceCPU:    r.CPU,
	} {
		if value == "" {
			continue
		}
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", name, value, err)
		}
		out[name] = q
	}
	return out, nil
}

// MinReplicas is the com.openfaas.scale.min label when it is a positive integer, else 1.
func MinReplicas(labels *map[string]string) int32 {
	if labels != nil {
		if n, err := strconv.Atoi((*labels)[minReplicasLabel]); err == nil && n > 0 {
			return int32(n)
		}
	}
	return 1
}

// NodeSelector reads constraints written as "key=value" or "key == value".
func NodeSelector(constraints []string) (map[string]string, error) {
	out := map[string]string{}
	for _, c := range constraints {
		sep := "=="
		if !strings.Contains(c, sep) {
			sep = "="
		}
		key, value, ok := strings.Cut(c, sep)
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, fmt.Errorf("constraint %q is not key=value", c)
		}
		out[key] = value
	}
	return out, nil
}

func (c Config) probe() *corev1.Probe {
	handler := corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/.lock"}}}
	if c.HTTPProbe {
		handler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: HealthPath, Port: intstr.FromInt32(c.RuntimePort),
		}}
	}
	return &corev1.Probe{
		ProbeHandler:        handler,
		InitialDelaySeconds: probeInitialDelay,
		TimeoutSeconds:      probeTimeout,
		PeriodSeconds:       probePeriod,
		SuccessThreshold:    1,
		FailureThreshold:    probeFailure,
	}
}

// MakeDeployment is the Deployment of a function; secrets maps each named secret to the
// cluster's object (its keys become the projected files; pull secrets become imagePullSecrets).
func MakeDeployment(
	req types.FunctionDeployment, secrets map[string]*corev1.Secret, cfg Config,
) (*appsv1.Deployment, error) {
	if err := ValidateName(req.Service); err != nil {
		return nil, err
	}
	if req.Image == "" {
		return nil, fmt.Errorf("function %q has no image", req.Service)
	}
	limits, err := resourceList(req.Limits)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	requests, err := resourceList(req.Requests)
	if err != nil {
		return nil, fmt.Errorf("requests: %w", err)
	}
	selector, err := NodeSelector(req.Constraints)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{FunctionLabel: req.Service}
	if req.Labels != nil {
		for k, v := range *req.Labels {
			labels[k] = v
		}
	}
	annotations := buildAnnotations(req)
	templateAnnotations := map[string]string{}
	for k, v := range annotations {
		templateAnnotations[k] = v
	}
	pull := cfg.ImagePullPolicy
	if pull == "" {
		pull = corev1.PullAlways
	}
	readOnly := req.ReadOnlyRootFilesystem
	security := &corev1.SecurityContext{ReadOnlyRootFilesystem: &readOnly}
	if cfg.SetNonRootUser {
		uid := NonRootUID
		security.RunAsUser = &uid
	}
	container := corev1.Container{
		Name:  req.Service,
		Image: req.Image,
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: cfg.RuntimePort, Protocol: corev1.ProtocolTCP},
		},
		Env:             buildEnv(req),
		Resources:       corev1.ResourceRequirements{Limits: limits, Requests: requests},
		ImagePullPolicy: pull,
		LivenessProbe:   cfg.probe(),
		ReadinessProbe:  cfg.probe(),
		SecurityContext: security,
	}
	pod := corev1.PodSpec{
		NodeSelector:  selector,
		RestartPolicy: corev1.RestartPolicyAlways,
		DNSPolicy:     corev1.DNSClusterFirst,
	}
	if readOnly {
		// The runtime keeps each invocation's scratch directory under /tmp.
		pod.Volumes = append(pod.Volumes, corev1.Volume{
			Name: tempVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
		})
		container.VolumeMounts = append(container.VolumeMounts,
			corev1.VolumeMount{Name: tempVolume, MountPath: "/tmp", ReadOnly: false})
	}
	var projections []corev1.VolumeProjection
	for _, name := range req.Secrets {
		secret, ok := secrets[name]
		if !ok {
			return nil, fmt.Errorf("required secret %q was not found in the cluster", name)
		}
		switch secret.Type {
		case corev1.SecretTypeDockercfg, corev1.SecretTypeDockerConfigJson:
			pod.ImagePullSecrets = append(pod.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
			continue
		}
		keys := make([]string, 0, len(secret.Data))
		for k := range secret.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		items := make([]corev1.KeyToPath, 0, len(keys))
		for _, k := range keys {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
		projections = append(projections, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Items: items,
		}})
	}
	if len(projections) > 0 {
		volume := req.Service + "-projected-secrets"
		pod.Volumes = append(pod.Volumes, corev1.Volume{
			Name:         volume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: projections}},
		})
		container.VolumeMounts = append(container.VolumeMounts,
			corev1.VolumeMount{Name: volume, ReadOnly: true, MountPath: SecretsMount})
	}
	pod.Containers = []corev1.Container{container}
	replicas := MinReplicas(req.Labels)
	history := int32(10)
	maxUnavailable, maxSurge := intstr.FromInt32(0), intstr.FromInt32(1)
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        req.Service,
			Namespace:   req.Namespace,
			Labels:      map[string]string{FunctionLabel: req.Service},
			Annotations: annotations,
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{FunctionLabel: req.Service}},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge,
				},
			},
			RevisionHistoryLimit: &history,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Name: req.Service, Labels: labels, Annotations: templateAnnotations,
				},
				Spec: pod,
			},
		},
	}, nil
}

// MakeService is the ClusterIP Service in front of a function's pods.
func MakeService(req types.FunctionDeployment, cfg Config) *corev1.Service {
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        req.Service,
			Namespace:   req.Namespace,
			Annotations: buildAnnotations(req),
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{FunctionLabel: req.Service},
			Ports: []corev1.ServicePort{{
				Name:       "http",
				Protocol:   corev1.ProtocolTCP,
				Port:       cfg.RuntimePort,
				TargetPort: intstr.FromInt32(cfg.RuntimePort),
			}},
		},
	}
}

// Status reads a function back from its Deployment (what list and describe answer).
func Status(d *appsv1.Deployment) types.FunctionStatus {
	status := types.FunctionStatus{
		Name:              d.Name,
		Namespace:         d.Namespace,
		AvailableReplicas: uint64(d.Status.AvailableReplicas),
		CreatedAt:         d.CreationTimestamp.Time,
	}
	if d.Spec.Replicas != nil {
		status.Replicas = uint64(*d.Spec.Replicas)
	}
	labels := map[string]string{}
	for k, v := range d.Spec.Template.Labels {
		labels[k] = v
	}
	annotations := map[string]string{} // the function's, not the Deployment controller's
	for k, v := range d.Spec.Template.Annotations {
		annotations[k] = v
	}
	status.Labels, status.Annotations = &labels, &annotations
	for k, v := range d.Spec.Template.Spec.NodeSelector {
		status.Constraints = append(status.Constraints, k+"=="+v)
	}
	sort.Strings(status.Constraints)
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.Secret != nil {
				status.Secrets = append(status.Secrets, s.Secret.Name)
			}
		}
	}
	for _, s := range d.Spec.Template.Spec.ImagePullSecrets {
		status.Secrets = append(status.Secrets, s.Name)
	}
	if len(d.Spec.Template.Spec.Containers) > 0 {
		c := d.Spec.Template.Spec.Containers[0]
		status.Image = c.Image
		env := map[string]string{}
		for _, e := range c.Env {
			if e.Name == EnvProcessName {
				status.EnvProcess = e.Value
			} else {
				env[e.Name] = e.Value
			}
		}
		if len(env) > 0 {
			status.EnvVars = env
		}
		status.Limits = fromList(c.Resources.Limits)
		status.Requests = fromList(c.Resources.Requests)
		if c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil {
			status.ReadOnlyRootFilesystem = *c.SecurityContext.ReadOnlyRootFilesystem
		}
	}
	return status
}

func fromList(list corev1.ResourceList) *types.FunctionResources {
	if len(list) == 0 {
		return nil
	}
	out := &types.FunctionResources{}
	if q, ok := list[corev1.ResourceMemory]; ok {
		out.Memory = q.String()
	}
	if q, ok := list[corev1.ResourceCPU]; ok {
		out.CPU = q.String()
	}
	return out
}

const defaultLookupTimeout = 5 * time.Second
