package main

// Exit statuses (doc.go), numbered in prpersist's way where one applies.
const (
	exitOK        = 0
	exitSyntax    = 1
	exitNotFound  = 2
	exitConflict  = 3
	exitFile      = 15
	exitMalformed = 97
	exitOther     = 99
)

// category is the text --json gives an exit status.
func category(code int) string {
	switch code {
	case exitOK:
		return "Done"
	case exitSyntax:
		return "Syntax error or declined"
	case exitNotFound:
		return "No such LU"
	case exitConflict:
		return "Conflicting state"
	case exitFile:
		return "File error"
	case exitMalformed:
		return "Malformed state"
	}
	return "Some other error"
}

// failure is an error with the exit status it causes.
type failure struct {
	code int
	err  error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(code int, err error) error { return &failure{code: code, err: err} }
