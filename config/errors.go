package config

import (
	"strings"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	// Path is the YAML path of the offending value, for example
	// "receivers[1].auth.token_url". It is empty for problems with the file
	// as a whole; YAML syntax problems carry their line in Message instead.
	Path string `json:"path"`
	// Message says what is wrong and what to do about it.
	Message string `json:"message"`
}

// String renders the problem as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Error is returned by Load and Validate when the configuration cannot be
// used. It carries every problem found, so an operator fixes them all in one
// edit. The CLI maps it to exit status 2.
type Error struct {
	// File is the configuration file, when known.
	File string
	// Problems lists every problem, in file order where that is known.
	Problems []Problem
	// cause is the error behind a file that could not be read at all.
	cause error
}

// Unwrap returns the error behind a file that could not be read (so that
// errors.Is(err, fs.ErrNotExist) works), or nil.
func (e *Error) Unwrap() error { return e.cause }

// Error prints one problem per line under a heading naming the file.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration")
	if e.File != "" {
		b.WriteString(" in ")
		b.WriteString(e.File)
	}
	if len(e.Problems) == 1 {
		b.WriteString(": ")
		b.WriteString(e.Problems[0].String())
		return b.String()
	}
	b.WriteString(":")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// problems collects Problems while loading and validating.
type problems struct{ list []Problem }

func (p *problems) add(path, format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = sprintf(format, args...)
	}
	p.list = append(p.list, Problem{Path: path, Message: msg})
}

func (p *problems) err(file string) error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{File: file, Problems: p.list}
}
