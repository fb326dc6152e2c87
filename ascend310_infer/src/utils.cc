/**
 * Helpers of the Ascend 310 inference app.
 */
#include "inc/utils.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

namespace {

bool ParseInt(const std::string &text, int *value) {
  if (text.empty()) return false;
  char *end = nullptr;
  errno = 0;
  long parsed = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || parsed < 0 || parsed > 1000000) return false;
  *value = static_cast<int>(parsed);
  return true;
}

bool EndsWith(const std::string &text, const std::string &suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string Usage() {
  return "usage: main --mindir_path=MODEL.mindir --input_path=DIR [--input_format=bin|image] "
         "[--result_path=./result_Files] [--time_path=./time_Result] [--image_size=224] [--resize=256] "
         "[--device_id=0]";
}

bool ParseFlags(int argc, char **argv, Flags *flags, std::string *error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      *error = "unexpected argument '" + arg + "'";
      return false;
    }
    std::string name = arg.substr(2);
    std::string value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      *error = "--" + name + " needs a value";
      return false;
    }
    bool ok = true;
    if (name == "mindir_path") {
      flags->mindir_path = value;
    } else if (name == "input_path") {
      flags->input_path = value;
    } else if (name == "input_format") {
      flags->input_format = value;
      ok = value == "bin" || value == "image";
    } else if (name == "result_path") {
      flags->result_path = value;
    } else if (name == "time_path") {
      flags->time_path = value;
    } else if (name == "image_size") {
      ok = ParseInt(value, &flags->image_size) && flags->image_size > 0;
    } else if (name == "resize") {
      ok = ParseInt(value, &flags->resize) && flags->resize > 0;
    } else if (name == "device_id") {
      ok = ParseInt(value, &flags->device_id);
    } else {
      *error = "unknown flag --" + name;
      return false;
    }
    if (!ok) {
      *error = "bad value '" + value + "' for --" + name;
      return false;
    }
  }
  if (flags->mindir_path.empty() || flags->input_path.empty()) {
    *error = "--mindir_path and --input_path are required";
    return false;
  }
  return true;
}

std::vector<std::string> ListFiles(const std::string &folder, const std::vector<std::string> &suffixes) {
  std::vector<std::string> files;
  DIR *dir = opendir(folder.c_str());
  if (dir == nullptr) return files;
  for (struct dirent *entry = readdir(dir); entry != nullptr; entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name.empty() || name[0] == '.') continue;
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const auto &suffix : suffixes) {
      if (EndsWith(lower, suffix)) {
        files.push_back(folder + "/" + name);
        break;
      }
    }
  }
  closedir(dir);
  std::sort(files.begin(), files.end());
  return files;
}

std::string Stem(const std::string &path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = name.find_last_of('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

bool IsDirectory(const std::string &path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

bool MakeDirectory(const std::string &path) {
  return IsDirectory(path) || mkdir(path.c_str(), 0755) == 0;
}

bool ReadBytes(const std::string &path, std::vector<char> *bytes) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) return false;
  std::streamsize size = file.tellg();
  if (size <= 0) return false;
  bytes->resize(static_cast<size_t>(size));
  file.seekg(0);
  return static_cast<bool>(file.read(bytes->data(), size));
}

bool WriteOutputs(const std::string &result_path, const std::string &stem,
                  const std::vector<mindspore::MSTensor> &outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string path = result_path + "/" + stem + "_" + std::to_string(i) + ".bin";
    std::shared_ptr<const void> data = outputs[i].Data();
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    if (!file || data == nullptr) return false;
    file.write(static_cast<const char *>(data.get()), static_cast<std::streamsize>(outputs[i].DataSize()));
    if (!file) return false;
  }
  return true;
}

std::string LatencySummary(const std::vector<double> &latencies_ms) {
  double average = latencies_ms.empty()
                       ? 0.0
                       : std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0) / latencies_ms.size();
  char text[128];
  std::snprintf(text, sizeof(text), "NN inference cost average time: %.3f ms of infer_count %zu", average,
                latencies_ms.size());
  return text;
}
