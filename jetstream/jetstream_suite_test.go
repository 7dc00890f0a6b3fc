package jetstream_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire/internal/mtest"
)

func TestJetstream(t *testing.T) {
	RegisterFailHandler(Fail)
	suite, reporter := mtest.Config()
	RunSpecs(t, "jetstream", suite, reporter)
}
