//go:build !unix

package auth

import (
	"io/fs"
	"os"
)

// fileIdentity is not available on this system; change detection relies on
// size and modification time.
func fileIdentity(fs.FileInfo) (dev, ino uint64) { return 0, 0 }

// copyOwner is a no-op on this system.
func copyOwner(*os.File, fs.FileInfo) {}

// lockDir is a no-op on this system: concurrent edits are not serialized.
func lockDir(*os.File) error { return nil }
