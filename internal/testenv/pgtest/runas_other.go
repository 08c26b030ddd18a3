//go:build !unix

package pgtest

import (
	"errors"
	"syscall"
)

type runAs struct{}

func unprivilegedUser() (*runAs, error) {
	return nil, errors.New("throwaway clusters are only supported on Unix systems")
}

func (u *runAs) procAttr(bool) *syscall.SysProcAttr { return nil }
func (u *runAs) chown(string) error                 { return nil }
func (u *runAs) describe() string                   { return "" }
