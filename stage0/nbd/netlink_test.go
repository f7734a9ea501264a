package nbd

import (
	"encoding/binary"
	"testing"
)

// reply builds a kernel-style generic netlink message.
func kernelMessage(typ uint16, seq uint32, cmd uint8, a attrs) []byte {
	b := genlMessage(typ, cmd, seq, a)
	binary.NativeEndian.PutUint16(b[6:], 0) // no request flags from the kernel
	return b
}

func u32At(t *testing.T, a map[uint16][]byte, typ uint16) uint32 {
	t.Helper()
	if len(a[typ]) != 4 {
		t.Fatalf("attribute %d: %d bytes, want 4", typ, len(a[typ]))
	}
	return binary.NativeEndian.Uint32(a[typ])
}

func u64At(t *testing.T, a map[uint16][]byte, typ uint16) uint64 {
	t.Helper()
	if len(a[typ]) != 8 {
		t.Fatalf("attribute %d: %d bytes, want 8", typ, len(a[typ]))
	}
	return binary.NativeEndian.Uint64(a[typ])
}

// TestConnectMessage decodes NBD_CMD_CONNECT as the kernel does: the
// header, the generic netlink command, and each attribute with its width
// (u32 index and socket fd, u64 sizes and timeouts; sockets nested twice).
func TestConnectMessage(t *testing.T) {
	ex := Export{Size: 5<<30 + 4096, Flags: FlagHasFlags | FlagReadOnly}
	b := connectMessage(28, 7, ex, 9, ConnectOptions{Index: 0, TimeoutSeconds: 15, DeadConnSeconds: 300})
	if int(binary.NativeEndian.Uint32(b)) != len(b) || len(b)%4 != 0 {
		t.Fatalf("length field %d, message %d bytes", binary.NativeEndian.Uint32(b), len(b))
	}
	if typ, flags := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint16(b[6:]); typ != 28 || flags != nlmFRequest|nlmFAck {
		t.Errorf("type %d flags %#x", typ, flags)
	}
	msgs, err := parseMessages(b)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	if m.seq != 7 || m.cmd != cmdConnect || b[17] != genlVersion {
		t.Errorf("seq %d cmd %d version %d", m.seq, m.cmd, b[17])
	}
	a, err := parseAttrs(m.attrs)
	if err != nil {
		t.Fatal(err)
	}
	if u32At(t, a, attrIndex) != 0 || u64At(t, a, attrSizeBytes) != ex.Size || u64At(t, a, attrBlockSizeBytes) != BlockSize ||
		u64At(t, a, attrServerFlags) != uint64(ex.Flags) || u64At(t, a, attrTimeout) != 15 || u64At(t, a, attrDeadConnTimeout) != 300 {
		t.Errorf("attributes: %v", a)
	}
	var items int
	if err := eachAttr(a[attrSockets], func(typ uint16, p []byte) {
		items++
		if typ != sockItem {
			t.Errorf("socket list item of type %d", typ)
		}
		in, err := parseAttrs(p)
		if err != nil {
			t.Fatal(err)
		}
		if fd := u32At(t, in, sockFD); fd != 9 {
			t.Errorf("socket fd %d, want 9", fd)
		}
	}); err != nil || items != 1 {
		t.Errorf("%d socket items, %v", items, err)
	}
	// Nested attributes carry NLA_F_NESTED (strict kernel parsers want
	// it; the others mask it off).
	if !hasNestedFlag(m.attrs, attrSockets) {
		t.Error("NBD_ATTR_SOCKETS lacks NLA_F_NESTED")
	}
}

func hasNestedFlag(b []byte, typ uint16) bool {
	for len(b) >= nlaHdrLen {
		n := int(binary.NativeEndian.Uint16(b))
		if binary.NativeEndian.Uint16(b[2:]) == typ|nlaFNested {
			return true
		}
		if n < nlaHdrLen || align(n) > len(b) {
			return false
		}
		b = b[align(n):]
	}
	return false
}

func TestReconfigureMessage(t *testing.T) {
	msgs, err := parseMessages(reconfigureMessage(28, 3, 2, 11))
	if err != nil || len(msgs) != 1 || msgs[0].cmd != cmdReconfigure {
		t.Fatalf("%+v %v", msgs, err)
	}
	a, err := parseAttrs(msgs[0].attrs)
	if err != nil {
		t.Fatal(err)
	}
	if u32At(t, a, attrIndex) != 2 || len(a) != 2 {
		t.Errorf("attributes %v", a)
	}
}

// controllerReply is what CTRL_CMD_GETFAMILY answers for nbd (the
// family's id, name and multicast groups; other attributes omitted).
func controllerReply(seq uint32, id uint16, group uint32) []byte {
	grp := attrs(nil).put(ctrlAttrGrpName, []byte(genlGroupName+"\x00")).u32(ctrlAttrGrpID, group)
	other := attrs(nil).put(ctrlAttrGrpName, []byte("other\x00")).u32(ctrlAttrGrpID, group+1)
	a := attrs(nil).put(ctrlAttrFamilyID, binary.NativeEndian.AppendUint16(nil, id)).
		put(ctrlAttrFamilyName, []byte(genlFamilyName+"\x00")).
		nested(ctrlAttrMcastGroups, attrs(nil).nested(1, other).nested(2, grp))
	return kernelMessage(genlIDCtrl, seq, 1, a)
}

func ack(seq uint32, errno int32) []byte {
	b := binary.NativeEndian.AppendUint32(nil, nlmsgHdrLen+4+nlmsgHdrLen)
	b = binary.NativeEndian.AppendUint16(b, nlmsgError)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(errno))
	return append(b, make([]byte, nlmsgHdrLen)...)
}

func TestParseFamilyAndEvents(t *testing.T) {
	datagram := append(controllerReply(1, 31, 9), ack(1, 0)...)
	msgs, err := parseMessages(datagram)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	if !msgs[1].isErr || msgs[1].errno != 0 || msgs[1].seq != 1 {
		t.Errorf("acknowledgement parsed as %+v", msgs[1])
	}
	f, err := parseFamily(msgs[0].attrs)
	if err != nil || f.id != 31 || f.group != 9 {
		t.Fatalf("family %+v, %v", f, err)
	}
	refused, err := parseMessages(ack(4, -16))
	if err != nil || !refused[0].isErr || refused[0].errno != -16 {
		t.Errorf("error message parsed as %+v (%v)", refused, err)
	}

	dead := kernelMessage(31, 0, cmdLinkDead, attrs(nil).u32(attrIndex, 3))
	msgs, err = parseMessages(dead)
	if err != nil {
		t.Fatal(err)
	}
	if i, ok := linkDeadIndex(msgs[0], 31); !ok || i != 3 {
		t.Errorf("link-dead index %d %v, want 3", i, ok)
	}
	if _, ok := linkDeadIndex(msgs[0], 32); ok {
		t.Error("a message of another family counted as link-dead")
	}
	other := kernelMessage(31, 0, cmdConnect, attrs(nil).u32(attrIndex, 3))
	if msgs, err = parseMessages(other); err != nil {
		t.Fatal(err)
	}
	if _, ok := linkDeadIndex(msgs[0], 31); ok {
		t.Error("NBD_CMD_CONNECT counted as link-dead")
	}
}

func TestParseMessagesRejects(t *testing.T) {
	good := controllerReply(1, 31, 9)
	for name, b := range map[string][]byte{
		"short header":     good[:10],
		"length too big":   append(binary.NativeEndian.AppendUint32(nil, 1000), good[4:]...),
		"length too small": append(binary.NativeEndian.AppendUint32(nil, 8), good[4:]...),
		"no genl header":   good[:nlmsgHdrLen],
	} {
		if name == "no genl header" {
			b = append([]byte(nil), b...)
			binary.NativeEndian.PutUint32(b, nlmsgHdrLen)
		}
		if _, err := parseMessages(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := parseAttrs([]byte{200, 0, 1, 0}); err == nil {
		t.Error("an attribute longer than its list was accepted")
	}
	if _, err := parseFamily(nil); err == nil {
		t.Error("a reply without a family id was accepted")
	}
}

// FuzzNetlink: any datagram parses or fails cleanly, never panics, and
// whatever parses as the family reply or a notification is within bounds.
func FuzzNetlink(f *testing.F) {
	f.Add(append(controllerReply(1, 31, 9), ack(1, 0)...))
	f.Add(kernelMessage(31, 0, cmdLinkDead, attrs(nil).u32(attrIndex, 3)))
	f.Add(connectMessage(28, 7, Export{Size: 1 << 20}, 9, ConnectOptions{TimeoutSeconds: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := parseMessages(b)
		if err != nil {
			return
		}
		for _, m := range msgs {
			parseFamily(m.attrs) //nolint:errcheck // only must not panic
			linkDeadIndex(m, m.typ)
		}
	})
}
