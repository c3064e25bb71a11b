//go:build tools

// Package tools keeps this module's requirement through `go mod tidy`; the binary is
// built from the imported main package by `python -m modelpilot_dev tools`.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
