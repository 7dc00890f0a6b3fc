package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// account is the user the server runs as: this process's user (cred nil),
// or, as root, an unprivileged one, since initdb and postgres refuse root.
type account struct {
	cred *syscall.Credential
}

// serverAccount picks the user to run the server as and, if that is not
// this process's user, hands dir to it.
func serverAccount(dir string) (*account, error) {
	if os.Geteuid() != 0 {
		return &account{}, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("pgtest: hand %s to the server user %s: %w", dir, name, err)
		}
		return &account{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
	}
	return nil, errors.New("pgtest: running as root and no unprivileged user (postgres, nobody) to run the server as")
}

func (a *account) initdbAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: a.cred}
}

// postmasterAttr adds Pdeathsig: if this process dies without Stop, the
// server gets SIGINT (a fast shutdown) and goes too.
func (a *account) postmasterAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: a.cred, Pdeathsig: syscall.SIGINT}
}
