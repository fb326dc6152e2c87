/**
 * Helpers of the Ascend 310 inference app: flags, file listing, binary I/O, latency summary.
 */
#ifndef PROXYLESSNAS_ASCEND310_INFER_UTILS_H_
#define PROXYLESSNAS_ASCEND310_INFER_UTILS_H_

#include <map>
#include <string>
#include <vector>

#include "include/api/types.h"

// Command-line flags as --name=value (or --name value); unknown names are an error.
struct Flags {
  std::string mindir_path;
  std::string input_path;
  std::string input_format = "bin";  // bin: preprocess.py output; image: decoded and transformed here
  std::string result_path = "./result_Files";
  std::string time_path = "./time_Result";
  int image_size = 224;
  int resize = 256;  // short side before the centre crop (image_size / crop_pct)
  int device_id = 0;
};

// Parses argv into flags; returns false with a one-line message in *error on bad input.
bool ParseFlags(int argc, char **argv, Flags *flags, std::string *error);
std::string Usage();

// Files of a folder (not recursive, no hidden files) whose names end with one of the suffixes, sorted.
std::vector<std::string> ListFiles(const std::string &folder, const std::vector<std::string> &suffixes);
// The file name without folder and extension: /a/b/n01_0001.bin -> n01_0001
std::string Stem(const std::string &path);
bool IsDirectory(const std::string &path);
bool MakeDirectory(const std::string &path);

// Whole file as bytes; false when it cannot be read.
bool ReadBytes(const std::string &path, std::vector<char> *bytes);
// Writes output i of the model as <result_path>/<stem>_<i>.bin.
bool WriteOutputs(const std::string &result_path, const std::string &stem,
                  const std::vector<mindspore::MSTensor> &outputs);
// "NN inference cost average time: X ms of infer_count N", as the Python stand-in writes it.
std::string LatencySummary(const std::vector<double> &latencies_ms);

#endif  // PROXYLESSNAS_ASCEND310_INFER_UTILS_H_
