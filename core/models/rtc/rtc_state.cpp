// SPDX-License-Identifier: MIT
// rtc: reading and writing the state file (the offset of the clock from the host's CLOCK_REALTIME).
#include "rtc_state.h"

#include <fmt/core.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace devemu {

bool loadRtcState(const std::string &path, int64_t &offsetNs, std::string &error)
{
	std::ifstream in(path);
	if (!in) {
		if (errno == ENOENT)
			return true;
		error = fmt::format("cannot read {}: {}", path, strerror(errno));
		return false;
	}
	std::string line;
	int lineNo = 0;
	while (std::getline(in, line)) {
		lineNo++;
		if (line.empty() || line[0] == '#')
			continue;
		if (line.rfind("offset_ns=", 0) == 0) {
			std::istringstream v(line.substr(10));
			long long n;
			if (v >> n && v.eof()) {
				offsetNs = n;
				continue;
			}
		}
		error = fmt::format("{}:{}: expected offset_ns=NUMBER, got '{}'", path, lineNo, line);
		return false;
	}
	return true;
}

bool saveRtcState(const std::string &path, int64_t offsetNs, std::string &error)
{
	std::string tmp = path + ".tmp";
	{
		std::ofstream out(tmp, std::ios::trunc);
		out << "# devemu rtc state: the clock is the host's CLOCK_REALTIME plus this offset\n"
		    << "offset_ns=" << offsetNs << "\n";
		out.close();
		if (!out) {
			error = fmt::format("cannot write the rtc state file {}", tmp);
			return false;
		}
	}
	if (std::rename(tmp.c_str(), path.c_str()) != 0) {
		error = fmt::format("cannot replace the rtc state file {}: {}", path, strerror(errno));
		return false;
	}
	return true;
}

} // namespace devemu
