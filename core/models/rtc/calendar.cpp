// SPDX-License-Identifier: MIT
// rtc: calendar arithmetic: proleptic Gregorian dates from and to seconds since the epoch (UTC).
#include "calendar.h"

#include <fmt/core.h>

#include <climits>

namespace devemu {

namespace {

void civilFromDays(int64_t z, int64_t &y, unsigned &m, unsigned &d)
{
	z += 719468;
	int64_t era = floorDiv(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
	m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
	y = yoe + era * 400 + (m <= 2);
}

bool isLeap(int64_t year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

} // namespace

int64_t floorDiv(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t floorMod(int64_t a, int64_t b)
{
	return a - floorDiv(a, b) * b;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = floorDiv(y, 400);
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int monthDays(int mon0, int64_t year)
{
	static constexpr int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return days[mon0] + (mon0 == 1 && isLeap(year));
}

int64_t rtcFieldsToSeconds(const RtcFields &f)
{
	int64_t year = f.year + floorDiv(f.mon - 1, 12);
	unsigned mon = static_cast<unsigned>(floorMod(f.mon - 1, 12) + 1);
	int64_t days = daysFromCivil(year, mon, 1) + (f.mday - 1);
	return days * kSecondsPerDay + int64_t(f.hour) * 3600 + int64_t(f.min) * 60 + f.sec;
}

RtcFields rtcSecondsToFields(int64_t seconds)
{
	int64_t days = floorDiv(seconds, kSecondsPerDay);
	int64_t rem = seconds - days * kSecondsPerDay;
	int64_t y;
	unsigned m, d;
	civilFromDays(days, y, m, d);
	return { static_cast<int>(rem % 60),   static_cast<int>(rem / 60 % 60),
		 static_cast<int>(rem / 3600), static_cast<int>(d),
		 static_cast<int>(m),	       static_cast<int>(y) };
}

int rtcWeekday(int64_t seconds)
{
	return static_cast<int>(floorMod(floorDiv(seconds, kSecondsPerDay) + 4, 7)); /* 1970-01-01 was a Thursday */
}

std::string formatTime(int64_t seconds)
{
	RtcFields f = rtcSecondsToFields(seconds);
	return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", f.year, f.mon, f.mday, f.hour, f.min, f.sec);
}

/* The kernel's rtc_valid_tm(). */
bool validTm(const rtc_time &tm)
{
	return !(tm.tm_year < 70 || tm.tm_year > INT_MAX - 1900 || static_cast<unsigned>(tm.tm_mon) >= 12 ||
		 tm.tm_mday < 1 || tm.tm_mday > monthDays(tm.tm_mon, int64_t(tm.tm_year) + 1900) ||
		 static_cast<unsigned>(tm.tm_hour) >= 24 || static_cast<unsigned>(tm.tm_min) >= 60 ||
		 static_cast<unsigned>(tm.tm_sec) >= 60);
}

int64_t tmToSeconds(const rtc_time &tm)
{
	return rtcFieldsToSeconds({ tm.tm_sec, tm.tm_min, tm.tm_hour, tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900 });
}

/* The kernel's rtc_time64_to_tm(): every field, wday and yday included. */
rtc_time secondsToTm(int64_t seconds)
{
	RtcFields f = rtcSecondsToFields(seconds);
	rtc_time tm{};
	tm.tm_sec = f.sec;
	tm.tm_min = f.min;
	tm.tm_hour = f.hour;
	tm.tm_mday = f.mday;
	tm.tm_mon = f.mon - 1;
	tm.tm_year = f.year - 1900;
	tm.tm_wday = rtcWeekday(seconds);
	tm.tm_yday = static_cast<int>(floorDiv(seconds, kSecondsPerDay) - daysFromCivil(f.year, 1, 1));
	tm.tm_isdst = 0;
	return tm;
}

} // namespace devemu
