package mire_test

import (
	"reflect"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
)

// Event types for the tag grammar table; each exists to be registered once.
type (
	tagValid struct {
		mire.Event `mire:"entity=order,type=Placed"`
	}
	tagValidVersion struct {
		mire.Event `mire:"entity=order_line, type=Item.Added, version=3"`
	}
	tagValidAlias struct {
		mire.Event `mire:"entity=order,type=Shipped,alias=Sent|Dispatched"`
	}
	tagUnknownKey struct {
		mire.Event `mire:"entity=order,type=X,colour=red"`
	}
	tagMissingEntity struct {
		mire.Event `mire:"type=X"`
	}
	tagMissingType struct {
		mire.Event `mire:"entity=order"`
	}
	tagBadEntity struct {
		mire.Event `mire:"entity=Order-Lines,type=X"`
	}
	tagBadType struct {
		mire.Event `mire:"entity=order,type=9lives"`
	}
	tagBadVersion struct {
		mire.Event `mire:"entity=order,type=X,version=0"`
	}
	tagRepeatedKey struct {
		mire.Event `mire:"entity=order,type=X,type=Y"`
	}
	tagNotKeyValue struct {
		mire.Event `mire:"entity=order,type"`
	}
	tagNoTag struct {
		mire.Event
	}
	tagNoMarker struct {
		Name string
	}
	tagDuplicateName struct {
		mire.Event `mire:"entity=order,type=Placed"`
	}
	notAStruct string
)

var _ = Describe("Registering event types", func() {
	DescribeTable("the tag grammar",
		func(event any, problem string) {
			err := mire.NewRegistry().Register(tagValid{}, event)
			if problem == "" {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			var regErr *mire.RegistrationError
			Expect(err).To(BeAssignableToTypeOf(regErr))
			Expect(err.Error()).To(ContainSubstring(reflect.TypeOf(event).String()), "names the Go type")
			Expect(err.Error()).To(ContainSubstring(problem))
		},
		Entry("a plain tag", tagValid{}, ""),
		Entry("version and spaces", tagValidVersion{}, ""),
		Entry("aliases", tagValidAlias{}, ""),
		Entry("a pointer to the struct", &tagValidVersion{}, ""),
		Entry("an unknown key", tagUnknownKey{}, `unknown key "colour"`),
		Entry("no entity", tagMissingEntity{}, "missing entity"),
		Entry("no type", tagMissingType{}, "missing type"),
		Entry("a bad entity name", tagBadEntity{}, `entity "Order-Lines" must match`),
		Entry("a bad type name", tagBadType{}, `type "9lives" must match`),
		Entry("version 0", tagBadVersion{}, `version "0" must be a whole number of at least 1`),
		Entry("a key given twice", tagRepeatedKey{}, `key "type" given twice`),
		Entry("a key without value", tagNotKeyValue{}, `"type" is not key=value`),
		Entry("no mire tag", tagNoTag{}, "has no `mire` tag"),
		Entry("no mire.Event", tagNoMarker{}, "does not embed mire.Event"),
		Entry("a duplicate (entity, type)", tagDuplicateName{}, `entity "order" type "Placed" is already registered by mire_test.tagValid`),
		Entry("a non-struct type", notAStruct(""), "must be a struct, not string"),
		Entry("a pointer to a pointer", new(*tagValid), "pointer to a pointer"),
	)

	It("registers nothing when one type of a call fails", func() {
		reg := mire.NewRegistry()
		Expect(reg.Register(tagValidVersion{}, tagUnknownKey{})).NotTo(Succeed())
		Expect(reg.Register(tagValidVersion{})).To(Succeed(), "tagValidVersion was not half-registered")
		Expect(reg.Register(tagValid{}, tagDuplicateName{})).NotTo(Succeed())
		Expect(reg.Register(tagDuplicateName{})).To(Succeed(), "the failed call left (order, Placed) free")
	})

	It("panics in MustRegister on a bad type", func() {
		Expect(func() { mire.NewRegistry().MustRegister(tagMissingType{}) }).To(PanicWith(MatchError(ContainSubstring("missing type"))))
	})

	It("treats registering the same Go type again as a no-op", func() {
		reg := mire.NewRegistry()
		Expect(reg.Register(tagValid{})).To(Succeed())
		Expect(reg.Register(tagValid{}, &tagValid{})).To(Succeed())
	})
})
