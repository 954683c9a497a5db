// SPDX-License-Identifier: MIT
// rtc: calendar arithmetic (the kernel's drivers/rtc/lib.c): seconds since the epoch <-> dates, rtc_time, BCD.
#pragma once

#include <linux/rtc.h>

#include <cstdint>
#include <string>

namespace devemu {

inline constexpr int64_t kSecondsPerDay = 86400;

/* Division and remainder rounding towards minus infinity. */
int64_t floorDiv(int64_t a, int64_t b);
int64_t floorMod(int64_t a, int64_t b);
/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d);
/* Days in a month (0..11) of a year. */
int monthDays(int mon0, int64_t year);

/* Broken-down calendar time as the chip holds it: month 1..12, full year. */
struct RtcFields {
	int sec = 0;
	int min = 0;
	int hour = 0;
	int mday = 1;
	int mon = 1;
	int year = 1970;
};

/* Seconds since the epoch <-> calendar (proleptic Gregorian, UTC); out-of-range days roll over. */
int64_t rtcFieldsToSeconds(const RtcFields &f);
RtcFields rtcSecondsToFields(int64_t seconds);
/* 0 = Sunday. */
int rtcWeekday(int64_t seconds);

/* "2024-02-29 23:59:58" (UTC). */
std::string formatTime(int64_t seconds);

/* rtc_valid_tm(). */
bool validTm(const rtc_time &tm);
int64_t tmToSeconds(const rtc_time &tm);
/* rtc_time64_to_tm(): every field, wday and yday included. */
rtc_time secondsToTm(int64_t seconds);

/* bin2bcd() and bcd2bin(), as the chip's registers hold values in BCD mode. */
inline uint8_t toBcd(int v)
{
	return static_cast<uint8_t>((v / 10) << 4 | (v % 10));
}
inline int fromBcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0x0f);
}

} // namespace devemu
