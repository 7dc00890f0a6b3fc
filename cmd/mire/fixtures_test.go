package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// The quickstart's events, for seeding.
type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Owner      string `json:"owner"`
}

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount"`
}

type Withdrawn struct {
	mire.Event `mire:"entity=account,type=Withdrawn"`
	Amount     int64 `json:"amount"`
}

type Shipped struct {
	mire.Event `mire:"entity=parcel,type=Shipped,version=2"`
	Address    string `json:"address"`
}

func init() { mire.MustRegister(Opened{}, Deposited{}, Withdrawn{}, Shipped{}) }

var db = mtest.Suite()

// The mire command, built on first use once per test process (a
// SynchronizedBeforeSuite is mtest.Suite's), into binaryDir.
var (
	buildOnce sync.Once
	binaryDir string
)

func binary() string {
	GinkgoHelper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mire-cli-")
		Expect(err).NotTo(HaveOccurred())
		binaryDir = dir
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "mire"), ".").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
	})
	return filepath.Join(binaryDir, "mire")
}

var _ = AfterSuite(func() {
	if binaryDir != "" {
		Expect(os.RemoveAll(binaryDir)).To(Succeed())
	}
})

// result is one run of the binary.
type result struct {
	Stdout, Stderr string
	Code           int
}

// mireCmd runs the binary with args, DATABASE_URL set to url (unless
// empty), and stdin.
func mireCmd(ctx context.Context, url, stdin string, args ...string) result {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, binary(), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	cmd.Stdin = bytes.NewBufferString(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		Expect(err).NotTo(HaveOccurred())
	}
	return result{stdout.String(), stderr.String(), code}
}

// fromJSON decodes a command's --json output.
func fromJSON[T any](r result) T {
	GinkgoHelper()
	Expect(r.Code).To(Equal(0), r.Stderr)
	var v T
	Expect(json.Unmarshal([]byte(r.Stdout), &v)).To(Succeed(), r.Stdout)
	return v
}

// seed writes the quickstart's account plus a parcel with metadata.
func seed(ctx context.Context, store *mire.Store) {
	GinkgoHelper()
	_, err := store.Append(ctx, "account-alice", mire.NoStream, Opened{Owner: "Alice"}, Deposited{Amount: 100}, Withdrawn{Amount: 30})
	Expect(err).NotTo(HaveOccurred())
	mdCtx := mire.WithMetadata(ctx, mire.Metadata{CorrelationID: "req-1", Actor: "ops"})
	_, err = store.Append(mdCtx, "parcel-p1", mire.NoStream, Shipped{Address: "1 Lane"})
	Expect(err).NotTo(HaveOccurred())
}

// freshSeeded returns the URL of a fresh database holding seed's events.
func freshSeeded(ctx context.Context) string {
	GinkgoHelper()
	fresh := db.DB.Fresh(ctx)
	seed(ctx, fresh.Store)
	return fresh.URL
}
