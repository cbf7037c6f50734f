package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the child receive SIGTERM when the suite dies, so
// that an interrupted suite leaves no servers behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
