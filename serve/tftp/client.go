package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Get fetches a file from a TFTP server into w: a small client for tests
// and load checks. blksize and window are asked for when not 0. A lost
// packet ends the transfer with an error rather than a retry (the server's
// retransmission covers a lost acknowledgement, and loopback loses none).
func Get(ctx context.Context, server, name string, blksize, window int, w io.Writer) (int64, error) {
	raddr, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		return 0, fmt.Errorf("tftp: %w", err)
	}
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return 0, fmt.Errorf("tftp: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) }) //nolint:errcheck // wakes the reader
	defer stop()
	req := binary.BigEndian.AppendUint16(nil, opRRQ)
	req = append(append(req, name...), 0)
	req = append(append(req, "octet"...), 0)
	if blksize > 0 {
		req = append(append(req, "blksize\x00"...), strconv.Itoa(blksize)+"\x00"...)
	}
	if window > 0 {
		req = append(append(req, "windowsize\x00"...), strconv.Itoa(window)+"\x00"...)
	}
	if _, err := c.WriteToUDP(req, raddr); err != nil {
		return 0, fmt.Errorf("tftp: %w", err)
	}
	blk, win := DefaultBlockSize, 1
	buf := make([]byte, 4+MaxBlockSize)
	var (
		total  int64
		expect uint64 = 1
		inWin  int
		peer   *net.UDPAddr
	)
	ack := func(b uint16) error {
		_, err := c.WriteToUDP(binary.BigEndian.AppendUint16([]byte{0, opACK}, b), peer)
		return err
	}
	for {
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return total, err
		}
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			return total, fmt.Errorf("tftp: %w", err)
		}
		if peer == nil {
			peer = from
		} else if from.String() != peer.String() {
			continue
		}
		p := buf[:n]
		if n < 4 {
			return total, errors.New("tftp: short packet")
		}
		switch binary.BigEndian.Uint16(p) {
		case opERROR:
			return total, fmt.Errorf("tftp: server error %d: %s", binary.BigEndian.Uint16(p[2:]), bytes.TrimRight(p[4:], "\x00"))
		case opOACK:
			fields := bytes.Split(bytes.TrimRight(p[2:], "\x00"), []byte{0})
			for i := 0; i+1 < len(fields); i += 2 {
				v, err := strconv.Atoi(string(fields[i+1]))
				if err != nil {
					continue
				}
				switch string(fields[i]) {
				case "blksize":
					blk = v
				case "windowsize":
					win = v
				}
			}
			if err := ack(0); err != nil {
				return total, err
			}
		case opDATA:
			b := binary.BigEndian.Uint16(p[2:])
			if b != uint16(expect) {
				if err := ack(uint16(expect - 1)); err != nil {
					return total, err
				}
				inWin = 0
				continue
			}
			if _, err := w.Write(p[4:]); err != nil {
				return total, err
			}
			total += int64(len(p) - 4)
			expect++
			inWin++
			last := len(p)-4 < blk
			if last || inWin == win {
				if err := ack(b); err != nil {
					return total, err
				}
				inWin = 0
			}
			if last {
				return total, nil
			}
		}
	}
}
