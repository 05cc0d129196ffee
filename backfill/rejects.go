package backfill

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/setrelay/setrelay/intent"
)

// Reject is one line of the rejects file.
type Reject struct {
	// Line is the 1-based line number in the input.
	Line int64 `json:"line"`
	// ID is the intent id when the line is a JSON object with a string id.
	ID     string   `json:"id,omitempty"`
	Errors []string `json:"errors"`
}

// rejectsFile appends Reject records as JSON lines and knows its logical
// size, which the checkpoint records.
type rejectsFile struct {
	f    *os.File
	w    *bufio.Writer
	size int64
}

// openRejects creates (or, when resuming, truncates to truncateTo and
// appends to) the rejects file.
func openRejects(path string, resume bool, truncateTo int64) (*rejectsFile, error) {
	flags := os.O_CREATE | os.O_WRONLY
	if !resume {
		flags |= os.O_TRUNC
	}
	// Rejected lines are intents, which hold personal data (subjects,
	// e-mail addresses): only the owner may read them. OpenFile's mode only
	// applies to a new file, so an existing one is narrowed too.
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backfill: rejects file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("backfill: rejects file: %w", err)
	}
	size := int64(0)
	if resume {
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("backfill: rejects file: %w", err)
		}
		if fi.Size() < truncateTo {
			_ = f.Close()
			return nil, fmt.Errorf("backfill: rejects file %s is %d bytes, shorter than the %d the checkpoint recorded; it was changed since", path, fi.Size(), truncateTo)
		}
		if err := f.Truncate(truncateTo); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("backfill: rejects file: %w", err)
		}
		if _, err := f.Seek(truncateTo, 0); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("backfill: rejects file: %w", err)
		}
		size = truncateTo
	}
	return &rejectsFile{f: f, w: bufio.NewWriter(f), size: size}, nil
}

func (r *rejectsFile) write(rj Reject) error {
	b, err := json.Marshal(rj)
	if err != nil {
		return fmt.Errorf("backfill: encode reject: %w", err)
	}
	b = append(b, '\n')
	if _, err := r.w.Write(b); err != nil {
		return fmt.Errorf("backfill: write rejects file: %w", err)
	}
	r.size += int64(len(b))
	return nil
}

func (r *rejectsFile) flush() error {
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("backfill: write rejects file: %w", err)
	}
	return nil
}

func (r *rejectsFile) close() error {
	ferr := r.flush()
	serr := r.f.Sync()
	return errors.Join(ferr, serr, r.f.Close())
}

// rejectFor describes why line could not be published.
func rejectFor(lineNo int64, line []byte, err error) Reject {
	rj := Reject{Line: lineNo}
	var ve *intent.ValidationError
	if errors.As(err, &ve) {
		rj.Errors = ve.Problems()
	} else {
		rj.Errors = []string{err.Error()}
	}
	// The id helps find the intent at its source; take it when the line
	// is at least a JSON object with a string id.
	var probe struct {
		ID any `json:"id"`
	}
	if line != nil && json.Unmarshal(line, &probe) == nil {
		if s, ok := probe.ID.(string); ok {
			rj.ID = s
		}
	}
	return rj
}
