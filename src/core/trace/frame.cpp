#include "conncheck/trace/frame.hpp"

namespace conncheck::trace {

std::string_view origin_name(FrameOrigin origin) {
    switch (origin) {
    case FrameOrigin::native:
        return "native";
    case FrameOrigin::python:
        return "python";
    case FrameOrigin::go:
        return "go";
    }
    return "unknown";
}

std::string_view trust_name(FrameTrust trust) {
    switch (trust) {
    case FrameTrust::exact:
        return "exact";
    case FrameTrust::unwound:
        return "unwound";
    }
    return "unknown";
}

} // namespace conncheck::trace
