//go:build tools

// Package tools pins the Kubernetes control-plane binaries that the
// simulated cluster runs. Nothing here is compiled into modelpilot: the
// blank imports only keep `go mod tidy` from dropping the requirements.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
