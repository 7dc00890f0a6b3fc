package sagas_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire/internal/mtest"
)

func TestSagas(t *testing.T) {
	RegisterFailHandler(Fail)
	suite, reporter := mtest.Config()
	RunSpecs(t, "sagas", suite, reporter)
}
