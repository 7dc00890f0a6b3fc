package projections

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("queriesFor", func() {
	It("fills in each schema's SQL once, quoted, and shares it", func() {
		a := queriesFor(`cache "a"`)
		Expect(queriesFor(`cache "a"`)).To(BeIdenticalTo(a))
		Expect(a.status).To(ContainSubstring(`"cache ""a""".subscriptions`))
		b := queriesFor("cache_b")
		Expect(b).NotTo(BeIdenticalTo(a))
		Expect(b.status).To(ContainSubstring(`"cache_b".subscriptions`))
	})
})
