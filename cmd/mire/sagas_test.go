package main_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("sagas", func() {
	It("counts each saga's instances by status, and lists a saga's instances by status", func(ctx SpecContext) {
		fresh := db.DB.Fresh(ctx)
		Expect(mireCmd(ctx, fresh.URL, "", "sagas").Stdout).To(Equal("No saga instances.\n"))
		_, err := fresh.Pool.Exec(ctx, `INSERT INTO mire.saga_instances (saga, instance_id, status, step, reason, version) VALUES
			('fulfilment', 'o1', 'completed', 'confirm', '', 7),
			('fulfilment', 'o2', 'compensated', 'reserve', 'card declined', 6),
			('fulfilment', 'o3', 'running', 'charge', '', 3),
			('billing', 'b1', 'failed', 'refund', 'bank offline', 9)`)
		Expect(err).NotTo(HaveOccurred())

		r := mireCmd(ctx, fresh.URL, "", "sagas")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^SAGA +RUNNING +COMPLETED +COMPENSATED +FAILED\n` +
			`billing +0 +0 +0 +1\nfulfilment +1 +1 +1 +0\n$`))

		r = mireCmd(ctx, fresh.URL, "", "sagas", "list", "fulfilment", "--status", "compensated")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^ID +STATUS +STEP +VERSION +UPDATED +REASON\no2 +compensated +reserve +6 +\S+Z +card declined\n$`))

		list := fromJSON[[]map[string]any](mireCmd(ctx, fresh.URL, "", "sagas", "list", "fulfilment", "--json", "--after", "o1"))
		Expect(list).To(HaveLen(2))
		Expect(list[0]).To(And(HaveKeyWithValue("id", "o2"), HaveKeyWithValue("stream", "saga-fulfilment:o2")))
		Expect(list[1]).To(And(HaveKeyWithValue("id", "o3"), HaveKeyWithValue("status", "running")))

		Expect(mireCmd(ctx, fresh.URL, "", "sagas", "list", "nothing").Stdout).To(Equal("No instances of saga \"nothing\".\n"))
		r = mireCmd(ctx, fresh.URL, "", "sagas", "list", "fulfilment", "--status", "lost")
		Expect(r.Code).To(Equal(2))
		Expect(r.Stderr).To(ContainSubstring(`--status "lost": want running, completed, compensated or failed`))
	})
})
