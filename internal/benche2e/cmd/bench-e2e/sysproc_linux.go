package main

import "syscall"

// sysProcAttr makes a child die with the harness, so a killed run leaves
// no gateway, proxy or upstream behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
