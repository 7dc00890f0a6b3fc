package pgschema_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire/internal/mtest"
)

func TestPgschema(t *testing.T) {
	RegisterFailHandler(Fail)
	suite, reporter := mtest.Config()
	RunSpecs(t, "pgschema", suite, reporter)
}
