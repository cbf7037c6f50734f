//go:build !unix

package feedback

import (
	"fmt"
	"os"
)

// lockDir opens the lock file; without flock the directory is not
// protected against a second process.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("feedback log: lock: %w", err)
	}
	return f, nil
}

func unlockDir(f *os.File) error { return f.Close() }
