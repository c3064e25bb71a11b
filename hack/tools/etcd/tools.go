//go:build tools

// Package tools keeps this module's requirement through `go mod tidy`; the binary is
// built from the imported main package by `python -m modelpilot_dev tools`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
