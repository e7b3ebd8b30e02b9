"""The grammar of the query language (``masksearch.lark``), shipped in the wheel as the
package ``masksearch.grammar`` and read with ``importlib.resources``."""
