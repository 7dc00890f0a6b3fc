package mtest

import (
	"os"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
)

// EnvSlow names the variable that brings the specs labelled "slow" (the
// stress specs: many goroutines, many rounds) into a run. CI sets it; a
// developer's default run leaves them out, so it stays quick.
const EnvSlow = "MIRE_SLOW_SPECS"

// Config returns Ginkgo's configuration for RunSpecs, leaving out the
// specs labelled "slow" unless EnvSlow is set to 1 or the run names a
// label filter of its own (-ginkgo.label-filter).
func Config() (types.SuiteConfig, types.ReporterConfig) {
	suite, reporter := ginkgo.GinkgoConfiguration()
	if suite.LabelFilter == "" && os.Getenv(EnvSlow) != "1" {
		suite.LabelFilter = "!slow"
	}
	return suite, reporter
}
