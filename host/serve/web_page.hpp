// The page `trainer serve` answers GET / with: one self-contained HTML document (its style and
// script inline, nothing fetched from elsewhere) where a user writes a prompt and watches the
// answer unmask step by step through the streaming API.
#pragma once

namespace loom::serve {

const char* web_page_html();

}  // namespace loom::serve
