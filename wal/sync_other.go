//go:build !linux

package wal

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

// syncfs exists on Linux only; NewSyncer refuses other systems, and auto
// never picks it there (ownFilesystem says false).
func syncfs(*os.File) error { return errSyncfsUnsupported }

func ownFilesystem(string) (bool, error) { return false, nil }

// pageCacheDirty is Linux only; a gated Syncer is a Syncer, which
// NewSyncer refuses to start on other systems.
func pageCacheDirty() (int64, error) { return 0, errSyncfsUnsupported }
