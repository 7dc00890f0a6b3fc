package cpustat

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// architecture Go runs on.
const clockTick = 10 * time.Millisecond

// times returns this process's CPU time and that of every process named
// postgres, from /proc. A postgres process's time includes its reaped
// children's (cutime and cstime), so backends that have exited still count,
// in the postmaster's.
func times() (self, postgres time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, false
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue // gone since the glob
		}
		// pid (comm) state ppid ...: after the comm, utime, stime, cutime
		// and cstime are the 12th to 15th fields.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "postgres") {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 15 {
			continue
		}
		for _, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			postgres += time.Duration(n) * clockTick
		}
	}
	return self, postgres, true
}
