package projections_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestProjections(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "projections")
}
