"""Data: read and check rows, format them with the prompt template, tokenize, mask, split and order them."""


from humanlike_tui.engine.data.batching import (IGNORE, Example, tokenize_rows, sft_tensors, pad_batch,
                                                split_by_prompt, epoch_order, step_indices)
from humanlike_tui.engine.data.formatting import (INSTRUCT_PROMPT, INSTRUCT_END, resolve_template, chat_turn_end,
                                                  format_prompt, answer_suffix, format_example, encode_answer)
from humanlike_tui.engine.data.loading import (LOCAL_SUFFIXES, MAX_FIELD_CHARS, DataCounts, Row, load_records,
                                               check_rows, READ_PROBLEMS, FIXES, reasons_text, shapes_text, load_rows)
from humanlike_tui.engine.data.preview import DataPreview, PreviewTurn, preview, row_turns, row_text
from humanlike_tui.engine.data.conversation import (SYSTEM, USER, ASSISTANT, SHAPES, Rendered, Encoded, with_system,
                                                    render as render_conversation, encode as encode_conversation)
