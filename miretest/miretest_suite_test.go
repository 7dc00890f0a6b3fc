package miretest_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestMiretest(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "miretest")
}
