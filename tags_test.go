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

	tagVersionMax struct {
		mire.Event `mire:"entity=order,type=X,version=10000"`
	}
	tagVersionHuge struct {
		mire.Event `mire:"entity=order,type=X,version=400000000"`
	}
	tagVersionWraps struct {
		mire.Event `mire:"entity=order,type=X,version=4294967297"`
	}
	tagVersionSigned struct {
		mire.Event `mire:"entity=order,type=X,version=+2"`
	}

	validateUnknown struct {
		mire.Event `mire:"entity=order,type=X"`
		Amount     int `json:"amount" validate:"gtx=0"`
	}
	validateBadParam struct {
		mire.Event `mire:"entity=order,type=X"`
		Amount     int `json:"amount" validate:"gt=abc"`
	}
	validateBadParamOmitted struct {
		mire.Event `mire:"entity=order,type=X"`
		Amount     int `json:"amount" validate:"omitempty,gt=abc"`
	}
	validateLine struct {
		Qty int `json:"qty" validate:"gt=abc"`
	}
	validateDived struct {
		mire.Event `mire:"entity=order,type=X"`
		Lines      []validateLine `json:"lines" validate:"dive"`
	}
	validatePointed struct {
		mire.Event `mire:"entity=order,type=X"`
		Line       *validateLine `json:"line" validate:"omitempty"`
	}
	validateMapKeys struct {
		mire.Event `mire:"entity=order,type=X"`
		Prices     map[string]int `json:"prices" validate:"dive,keys,lenx=3,endkeys,gt=0"`
	}
	validateDiveScalar struct {
		mire.Event `mire:"entity=order,type=X"`
		Amount     int `json:"amount" validate:"dive"`
	}
	validateFine struct {
		mire.Event `mire:"entity=order,type=X"`
		Amount     int                        `json:"amount" validate:"gte=0,lte=100"`
		Lines      []validGoodLine            `json:"lines" validate:"required,dive"`
		Line       *validGoodLine             `json:"line" validate:"omitempty"`
		Prices     map[string]int             `json:"prices" validate:"dive,keys,len=3,endkeys,gt=0"`
		Currency   string                     `json:"currency" validate:"required_with=Amount,omitempty,oneof=EUR USD"`
		Nested     map[string][]validGoodLine `json:"nested" validate:"dive,dive"`
	}
	validGoodLine struct {
		Qty  int            `json:"qty" validate:"gt=0"`
		Next *validGoodLine `json:"next"`
	}

	noFieldEncoded struct {
		mire.Event `mire:"entity=order,type=X"`
		//lint:ignore U1000 unexported on purpose: no field of the event is encoded
		amount int
		Hidden string `json:"-"`
	}
	noPayload struct {
		mire.Event `mire:"entity=order,type=X"`
	}
	promotedPayload struct {
		mire.Event `mire:"entity=order,type=X"`
		embedded
	}
	embedded struct {
		Amount int `json:"amount"`
	}
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
		Entry("version 0", tagBadVersion{}, `version "0" must be a whole number from 1 to 10000`),
		Entry("the highest version", tagVersionMax{}, ""),
		Entry("a version above 10000", tagVersionHuge{}, `version "400000000" must be a whole number from 1 to 10000`),
		Entry("a version that wraps in 32 bits", tagVersionWraps{}, `version "4294967297" must be a whole number from 1 to 10000`),
		Entry("a version with a sign", tagVersionSigned{}, `version "+2" must be a whole number from 1 to 10000`),
		Entry("a key given twice", tagRepeatedKey{}, `key "type" given twice`),
		Entry("a key without value", tagNotKeyValue{}, `"type" is not key=value`),
		Entry("no mire tag", tagNoTag{}, "has no `mire` tag"),
		Entry("no mire.Event", tagNoMarker{}, "does not embed mire.Event"),
		Entry("a duplicate (entity, type)", tagDuplicateName{}, `entity "order" type "Placed" is already registered by mire_test.tagValid`),
		Entry("a non-struct type", notAStruct(""), "must be a struct, not string"),
		Entry("a pointer to a pointer", new(*tagValid), "pointer to a pointer"),

		Entry("a validate tag naming no validator", validateUnknown{}, `validate tags: field Amount: Undefined validation function 'gtx' on field 'Amount'`),
		Entry("a validate parameter that is not a number", validateBadParam{}, `validate tags: field Amount: strconv.ParseInt: parsing "abc"`),
		Entry("a bad parameter behind omitempty", validateBadParamOmitted{}, `validate tags: field Amount: strconv.ParseInt: parsing "abc"`),
		Entry("a bad parameter in a slice element (dive)", validateDived{}, `validate tags: field Lines: strconv.ParseInt: parsing "abc"`),
		Entry("a bad parameter behind a pointer", validatePointed{}, `validate tags: field Line: strconv.ParseInt: parsing "abc"`),
		Entry("an unknown validator on map keys", validateMapKeys{}, `validate tags: field Prices: Undefined validation function 'lenx' on field 'Prices'`),
		Entry("dive on a scalar", validateDiveScalar{}, `validate tags: field Amount: dive error! can't dive on a non slice or map`),
		Entry("valid validate tags on slices, maps, pointers and nested structs", validateFine{}, ""),

		Entry("fields, none encoded as JSON", noFieldEncoded{}, "none of its 2 fields besides mire.Event is encoded as JSON (unexported, or tagged json:\"-\")"),
		Entry("no fields besides the marker (an event without payload)", noPayload{}, ""),
		Entry("fields promoted from an embedded struct", promotedPayload{}, ""),
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
