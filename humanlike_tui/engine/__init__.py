"""The engine: torch, transformers, peft, bitsandbytes, datasets, pynvml; never textual.

Submodules are imported on use (`from humanlike_tui.engine import train`), so importing this
package stays cheap.
"""
