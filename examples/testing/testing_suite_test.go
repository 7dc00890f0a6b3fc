package main

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire/miretest"
)

// TestMain keeps one PostgreSQL server for the plain tests' miretest.Store
// and the suite's miretest.Suite, and stops it at the end.
func TestMain(m *testing.M) { miretest.Main(m) }

func TestAccount(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "account")
}
