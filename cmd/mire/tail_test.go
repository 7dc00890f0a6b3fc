package main_test

import (
	"os"
	"os/exec"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
)

var _ = Describe("tail", func() {
	var fresh *miretest.DB
	BeforeEach(func(ctx SpecContext) {
		fresh = db.DB.Fresh(ctx)
		seed(ctx, fresh.Store)
	})

	start := func(args ...string) *gexec.Session {
		GinkgoHelper()
		cmd := exec.Command(binary(), append([]string{"tail", "--poll", "100ms"}, args...)...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+fresh.URL)
		session, err := gexec.Start(cmd, nil, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Kill() })
		return session
	}

	It("prints the log, then new events, and exits 0 on Ctrl-C", func(ctx SpecContext) {
		session := start("--category", "account")
		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  account-alice v1  Opened  \{"owner":"Alice"\}\n`))
		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`\S+Z  account-alice v3  Withdrawn  \{"amount":30\}\n`))

		_, err := fresh.Store.Append(ctx, "account-alice", mire.Exactly(3), Deposited{Amount: 7})
		Expect(err).NotTo(HaveOccurred())
		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`account-alice v4  Deposited  \{"amount":7\}\n`))
		Expect(string(session.Out.Contents())).NotTo(ContainSubstring("parcel"))

		session.Interrupt()
		Eventually(session).WithContext(ctx).Should(gexec.Exit(0))
	}, SpecTimeout(time.Minute))

	It("never skips an event whose transaction commits after a later one's", func(ctx SpecContext) {
		session := start("--json")
		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`"stream_id":"parcel-p1"`)) // the seed's last: tail is reading

		tx, err := fresh.Pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { _ = tx.Rollback(ctx) })
		_, err = fresh.Store.AppendTx(ctx, tx, "account-bob", mire.NoStream, Opened{Owner: "Bob"}) // the earlier position
		Expect(err).NotTo(HaveOccurred())
		_, err = fresh.Store.Append(ctx, "account-carol", mire.NoStream, Opened{Owner: "Carol"}) // committed first
		Expect(err).NotTo(HaveOccurred())

		// Carol's transaction is newer than Bob's, still running: not yet.
		Consistently(session.Out).WithContext(ctx).Within(500 * time.Millisecond).ShouldNot(gbytes.Say("carol"))
		Expect(tx.Commit(ctx)).To(Succeed())
		fresh.Store.Notify()
		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`"stream_id":"account-bob".*\n.*"stream_id":"account-carol"`))

		session.Interrupt()
		Eventually(session).WithContext(ctx).Should(gexec.Exit(0))
	}, SpecTimeout(time.Minute))

	It("prints each stream in version order, also when an older transaction appended the later version", func(ctx SpecContext) {
		session := start()
		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`parcel-p1 v1`)) // the seed's last: tail is reading

		// A starts first (its write gives it the smaller xid), B appends
		// dave v1 and commits, then A appends dave v2: in (xid, position)
		// order v2 comes first.
		txA, err := fresh.Pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { _ = txA.Rollback(ctx) })
		_, err = fresh.Store.AppendTx(ctx, txA, "account-erin", mire.NoStream, Opened{Owner: "Erin"})
		Expect(err).NotTo(HaveOccurred())
		_, err = fresh.Store.Append(ctx, "account-dave", mire.NoStream, Opened{Owner: "Dave"})
		Expect(err).NotTo(HaveOccurred())
		_, err = fresh.Store.AppendTx(ctx, txA, "account-dave", mire.Exactly(1), Deposited{Amount: 2})
		Expect(err).NotTo(HaveOccurred())
		Expect(txA.Commit(ctx)).To(Succeed())
		fresh.Store.Notify()

		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`account-erin v1  Opened`))
		Eventually(session.Out).WithContext(ctx).Should(gbytes.Say(`account-dave v1  Opened  \{"owner":"Dave"\}\n.*account-dave v2  Deposited  \{"amount":2\}\n`))

		session.Interrupt()
		Eventually(session).WithContext(ctx).Should(gexec.Exit(0))
	}, SpecTimeout(time.Minute))
})
