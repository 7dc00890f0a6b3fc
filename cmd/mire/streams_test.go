package main_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("streams and show", func() {
	var url string
	BeforeEach(func(ctx SpecContext) {
		url = freshSeeded(ctx)
	})

	It("lists streams, newest write first, filtered by category", func(ctx SpecContext) {
		r := mireCmd(ctx, url, "", "streams")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^STREAM +CATEGORY +VERSION +LAST WRITE\nparcel-p1 +parcel +1 +\S+Z\naccount-alice +account +3 +\S+Z\n$`))

		list := fromJSON[[]map[string]any](mireCmd(ctx, url, "", "streams", "--json", "--category", "account"))
		Expect(list).To(HaveLen(1))
		Expect(list[0]).To(HaveKeyWithValue("stream_id", "account-alice"))
		Expect(list[0]).To(HaveKeyWithValue("version", BeNumerically("==", 3)))
		Expect(list[0]).To(HaveKey("last_write_at"))

		Expect(fromJSON[[]any](mireCmd(ctx, url, "", "streams", "--json", "--limit", "1"))).To(HaveLen(1))
		Expect(fromJSON[[]any](mireCmd(ctx, url, "", "streams", "--json", "--category", "none"))).To(BeEmpty())
		Expect(mireCmd(ctx, url, "", "streams", "--category", "none").Stdout).To(Equal("No streams.\n"))
	})

	It("shows a stream's events as stored, whatever their Go types", func(ctx SpecContext) {
		r := mireCmd(ctx, url, "", "show", "parcel-p1")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^parcel-p1 v1  Shipped \(schema version 2\)\n` +
			`  position 4, recorded \S+Z, id [0-9a-f-]{36}\n` +
			`  metadata \{"actor": "ops", "correlation_id": "req-1"\}\n` +
			`  \{\n    "address": "1 Lane"\n  \}\n$`))

		events := fromJSON[[]map[string]any](mireCmd(ctx, url, "", "show", "account-alice", "--from", "2", "--json"))
		Expect(events).To(HaveLen(2))
		Expect(events[0]).To(HaveKeyWithValue("type", "Deposited"))
		Expect(events[0]).To(HaveKeyWithValue("version", BeNumerically("==", 2)))
		Expect(events[0]).To(HaveKeyWithValue("data", HaveKeyWithValue("amount", BeNumerically("==", 100))))
		Expect(events[1]).To(HaveKeyWithValue("type", "Withdrawn"))
		Expect(events[1]).NotTo(HaveKey("metadata"))
	})

	It("refuses a stream that does not exist, and a bad --from", func(ctx SpecContext) {
		r := mireCmd(ctx, url, "", "show", "account-bob")
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring(`stream "account-bob" does not exist (see ` + "`mire streams`)"))

		r = mireCmd(ctx, url, "", "show", "account-alice", "--from", "0")
		Expect(r.Code).To(Equal(2))
	})
})
