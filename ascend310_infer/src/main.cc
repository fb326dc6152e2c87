/**
 * Ascend 310 inference of a ProxylessNAS MINDIR with the MindSpore C++ API.
 *
 * Reads the float32 CHW inputs written by preprocess.py (--input_format=bin, the default), or decodes
 * and transforms images itself (--input_format=image: resize short side, centre crop, ImageNet
 * normalisation, the same evaluation transform). Writes <result_path>/<name>_0.bin (float32 logits)
 * and the latency summary <time_path>/test_perform_static.txt.
 */
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "include/dataset/execute.h"
#include "include/dataset/vision.h"
#include "inc/utils.h"

using mindspore::Context;
using mindspore::DataType;
using mindspore::Graph;
using mindspore::GraphCell;
using mindspore::kSuccess;
using mindspore::Model;
using mindspore::ModelType;
using mindspore::MSTensor;
using mindspore::Serialization;
using mindspore::Status;
using mindspore::dataset::Execute;
using mindspore::dataset::TensorTransform;

namespace {

int Fail(const std::string &message) {
  std::cerr << "error: " << message << std::endl;
  return 1;
}

// The evaluation transform of src/dataset.py (eval_ops), applied to encoded image bytes.
std::unique_ptr<Execute> MakeImageTransform(const Flags &flags) {
  std::vector<std::shared_ptr<TensorTransform>> ops = {
      std::make_shared<mindspore::dataset::vision::Decode>(),
      std::make_shared<mindspore::dataset::vision::Resize>(std::vector<int32_t>{flags.resize}),
      std::make_shared<mindspore::dataset::vision::CenterCrop>(std::vector<int32_t>{flags.image_size}),
      std::make_shared<mindspore::dataset::vision::Normalize>(std::vector<float>{123.675f, 116.28f, 103.53f},
                                                              std::vector<float>{58.395f, 57.12f, 57.375f}),
      std::make_shared<mindspore::dataset::vision::HWC2CHW>()};
  return std::make_unique<Execute>(ops);
}

}  // namespace

int main(int argc, char **argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) {
    std::cerr << "error: " << error << "\n" << Usage() << std::endl;
    return 2;
  }
  std::ifstream model_file(flags.mindir_path);
  if (!model_file) return Fail("MINDIR not found: " + flags.mindir_path);
  if (!IsDirectory(flags.input_path)) return Fail("input folder not found: " + flags.input_path);
  if (!MakeDirectory(flags.result_path) || !MakeDirectory(flags.time_path)) {
    return Fail("cannot create " + flags.result_path + " or " + flags.time_path);
  }

  auto context = std::make_shared<Context>();
  auto ascend = std::make_shared<mindspore::AscendDeviceInfo>();
  ascend->SetDeviceID(static_cast<uint32_t>(flags.device_id));
  // high-precision kernels where the device offers a choice: the accuracy should match the exported network
  ascend->SetOpSelectImplMode("high_precision");
  context->MutableDeviceInfo().push_back(ascend);

  Graph graph;
  Status status = Serialization::Load(flags.mindir_path, ModelType::kMindIR, &graph);
  if (status != kSuccess) return Fail("cannot load " + flags.mindir_path + " as MINDIR: " + status.ToString());
  Model model;
  status = model.Build(GraphCell(graph), context);
  if (status != kSuccess) return Fail("building the model failed on device " + std::to_string(flags.device_id) +
                                      ": " + status.ToString());

  std::vector<MSTensor> model_inputs = model.GetInputs();
  if (model_inputs.size() != 1) return Fail("expected a model with one input, got " +
                                            std::to_string(model_inputs.size()));
  const MSTensor &input_spec = model_inputs[0];
  const size_t input_bytes = input_spec.DataSize();

  const bool decode = flags.input_format == "image";
  std::vector<std::string> files = decode
      ? ListFiles(flags.input_path, {".jpg", ".jpeg", ".png", ".bmp"})
      : ListFiles(flags.input_path, {".bin"});
  if (files.empty()) return Fail("no " + flags.input_format + " inputs in " + flags.input_path);
  std::unique_ptr<Execute> transform = decode ? MakeImageTransform(flags) : nullptr;

  std::vector<double> latencies_ms;
  latencies_ms.reserve(files.size());
  for (const std::string &file : files) {
    std::vector<char> bytes;
    if (!ReadBytes(file, &bytes)) return Fail("cannot read " + file);
    MSTensor image;
    if (decode) {
      MSTensor encoded("image", DataType::kNumberTypeUInt8, {static_cast<int64_t>(bytes.size())}, bytes.data(),
                       bytes.size());
      status = (*transform)(encoded, &image);
      if (status != kSuccess) return Fail("cannot decode/transform " + file + ": " + status.ToString());
    } else {
      image = MSTensor("image", DataType::kNumberTypeFloat32, input_spec.Shape(), bytes.data(), bytes.size());
    }
    if (image.DataSize() != input_bytes) {
      return Fail(file + " gives " + std::to_string(image.DataSize()) + " bytes but the model takes " +
                  std::to_string(input_bytes) + " (exported for another --image_size or batch size?)");
    }
    std::vector<MSTensor> inputs = {MSTensor(input_spec.Name(), input_spec.DataType(), input_spec.Shape(),
                                             image.Data().get(), image.DataSize())};
    std::vector<MSTensor> outputs;
    auto start = std::chrono::steady_clock::now();
    status = model.Predict(inputs, &outputs);
    auto end = std::chrono::steady_clock::now();
    if (status != kSuccess) return Fail("inference failed on " + file + ": " + status.ToString());
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    if (!WriteOutputs(flags.result_path, Stem(file), outputs)) {
      return Fail("cannot write the result of " + file + " to " + flags.result_path);
    }
  }

  const std::string summary = LatencySummary(latencies_ms);
  std::cout << summary << std::endl;
  std::ofstream time_file(flags.time_path + "/test_perform_static.txt", std::ios::trunc);
  time_file << summary << std::endl;
  return time_file ? 0 : Fail("cannot write " + flags.time_path + "/test_perform_static.txt");
}
