//go:build tools

// Package tools keeps the Gateway API requirement through `go mod tidy`; only the
// CRD YAML in the module source is used.
package tools

import (
	_ "sigs.k8s.io/gateway-api/apis/v1"
)
