package schemas

import (
	"bytes"
	"testing"
	"time"
)

func TestAppendUnhashedMatchesEncode(t *testing.T) {
	at := time.Date(2026, 11, 21, 10, 0, 0, 120000000, time.UTC)
	for _, hop := range []string{"", "01JHOP", "odd\"hop\\é\n<&>"} {
		ev, err := NewEvent("01JRUN", EventHopAllowed, hop, at, &HopDecision{From: "a", To: "b", Message: "x<y>\"z\"", Envelope: []byte(`{"k":"<&>"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ev.Seq, ev.PrevHash = 7, GenesisHash
		want, err := Encode(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.AppendUnhashed(nil); !bytes.Equal(got, want) {
			t.Errorf("hop %q:\n got %s\nwant %s", hop, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\"", "back\\slash", "ctl\x01", "é", "\xff", "<&>", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := Encode(s)
		if err != nil {
			t.Skip()
		}
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, Encode = %s", s, got, want)
		}
	})
}

func TestDeliveryMarshalMatchesEncode(t *testing.T) {
	env, err := sampleEnvelope().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cases := []*Delivery{
		{Version: Version, Kind: DeliverInvoke, Envelope: env, Context: Context{RunID: "r", HopID: "h", Depth: 2, Ancestry: []string{"a", "b"}, OnBehalfOf: "u", Deadline: time.Now().UTC()}, LedgerSeq: 4},
		{Version: Version, Kind: DeliverDenied, Context: Context{RunID: "r", HopID: "h"}, Denial: &Denial{Reason: ReasonPolicy, Message: "no <way>", PolicyIDs: []string{"p"}, SubmitSeq: 3}},
		{Version: Version, Kind: DeliverTimeout, Context: Context{}},
	}
	for _, d := range cases {
		want, err := Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Marshal()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s (%v)", d.Kind, got, want, err)
		}
	}
}
