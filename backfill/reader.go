package backfill

import (
	"bufio"
	"errors"
	"io"

	"github.com/setrelay/setrelay/intent"
)

// maxLine is the longest line the reader holds in memory: an intent of
// intent.MaxSize bytes followed by "\r\n". Anything longer is rejected
// without being loaded, so one bad line cannot exhaust memory.
const maxLine = intent.MaxSize + 2

// lineReader reads lines of at most maxLine bytes, counting the bytes it
// consumes so that a checkpoint can record an exact offset.
type lineReader struct {
	br *bufio.Reader
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, maxLine)}
}

// next returns the next line (including its newline; valid until the next
// call), the number of bytes it took from the input, and whether it was
// longer than maxLine (line is then nil, and the whole line was skipped).
// It returns io.EOF once the input is exhausted; a last line without a
// newline is returned normally first.
func (lr *lineReader) next() (line []byte, n int64, tooLong bool, err error) {
	b, err := lr.br.ReadSlice('\n')
	n = int64(len(b))
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			b, err = lr.br.ReadSlice('\n')
			n += int64(len(b))
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return nil, n, true, err
	}
	if errors.Is(err, io.EOF) && len(b) > 0 {
		err = nil
	}
	return b, n, false, err
}
