package pgschema_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestPgschema(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "pgschema")
}
