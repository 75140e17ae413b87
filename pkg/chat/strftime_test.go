package chat

import (
	"testing"
	"time"
)

// Expected values are Python's datetime.strftime output (glibc, C locale).
func TestStrftime(t *testing.T) {
	t1 := time.Date(2024, 7, 26, 13, 5, 9, 123456000, time.UTC)
	t2 := time.Date(2023, 1, 5, 0, 7, 3, 0, time.UTC)
	cases := []struct {
		t      time.Time
		format string
		want   string
	}{
		{t1, "%d %b %Y", "26 Jul 2024"},
		{t1, "%Y-%m-%d", "2024-07-26"},
		{t1, "%B %-d, %Y", "July 26, 2024"},
		{t1, "%A %a %H:%M:%S %I %p %j %y %e %w %u", "Friday Fri 13:05:09 01 PM 208 24 26 5 5"},
		{t1, "%F %T %D %R", "2024-07-26 13:05:09 07/26/24 13:05"},
		{t1, "%f %z %Z %%", "123456 +0000 UTC %"},
		// Literal text that spells Go layout elements stays as it is.
		{t1, "Year 2006 Jan Mon 15 %Q", "Year 2006 Jan Mon 15 %Q"},
		{t1, "%c", "Fri Jul 26 13:05:09 2024"},
		{t2, "%d %b %Y", "05 Jan 2023"},
		{t2, "%B %-d, %Y", "January 5, 2023"},
		{t2, "%A %a %H:%M:%S %I %p %j %y %e %w %u", "Thursday Thu 00:07:03 12 AM 005 23  5 4 4"},
		{t2, "%c", "Thu Jan  5 00:07:03 2023"},
		{t2, "trailing %", "trailing %"},
	}
	for _, c := range cases {
		if got := strftime(c.format, c.t); got != c.want {
			t.Errorf("strftime(%q, %v) = %q, want %q", c.format, c.t, got, c.want)
		}
	}
}
