package backfill

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Checkpoint is how far a backfill got: every line before Offset (the first
// Line lines) was either stored in JetStream (its publish acknowledged) or
// written to the rejects file. It is saved with an atomic rename, so a crash
// leaves the previous checkpoint or the new one, never a torn file.
type Checkpoint struct {
	// File and Size identify the input, so that --resume refuses another
	// file. Size is -1 when unknown (standard input).
	File string `json:"file"`
	Size int64  `json:"size"`
	// Offset is the byte offset of the first line not yet settled, and Line
	// the number of lines before it.
	Offset int64 `json:"offset"`
	Line   int64 `json:"line"`
	// RejectsOffset is the size of the rejects file at this point; resuming
	// truncates the rejects file to it, so a line rejected after the
	// checkpoint is not reported twice.
	RejectsOffset int64 `json:"rejects_offset"`
	// Totals over every run of this backfill, up to Offset.
	Published  uint64 `json:"published"`
	Duplicates uint64 `json:"duplicates"`
	Invalid    uint64 `json:"invalid"`
	// Done is set when the whole input was read and settled.
	Done    bool      `json:"done"`
	Updated time.Time `json:"updated"`
}

// LoadCheckpoint reads a checkpoint written by Save. A missing file returns
// an error matching os.ErrNotExist.
func LoadCheckpoint(path string) (Checkpoint, error) {
	var c Checkpoint
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("backfill: read checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("backfill: checkpoint %s is not valid: %w", path, err)
	}
	if c.Offset < 0 || c.Line < 0 || c.RejectsOffset < 0 {
		return c, fmt.Errorf("backfill: checkpoint %s has a negative position", path)
	}
	return c, nil
}

// Save writes c to path atomically: a temporary file in the same directory,
// synced, then renamed over path.
func (c Checkpoint) Save(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("backfill: encode checkpoint: %w", err)
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("backfill: write checkpoint: %w", err)
	}
	tmp := f.Name()
	// The checkpoint names the input and the rejects file and their
	// positions; like them it is the owner's alone. CreateTemp already
	// makes it 0600, this says so.
	merr := f.Chmod(0o600)
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(merr, werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backfill: write checkpoint %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("backfill: write checkpoint: %w", err)
	}
	return nil
}
