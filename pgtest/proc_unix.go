//go:build unix && !linux

package pgtest

import (
	"errors"
	"os"
	"syscall"
)

// account is the user the server runs as: always this process's user.
type account struct{}

// serverAccount refuses root, which initdb and postgres refuse too, with
// an error that says what to do instead.
func serverAccount(string) (*account, error) {
	if os.Geteuid() == 0 {
		return nil, errors.New("pgtest: running as root, which initdb and postgres refuse; run the tests as a normal user, or point " +
			EnvTestDatabase + " (tests) or " + EnvDatabase + " (examples) at a running server")
	}
	return &account{}, nil
}

func (*account) initdbAttr() *syscall.SysProcAttr { return nil }

func (*account) postmasterAttr() *syscall.SysProcAttr { return nil }
