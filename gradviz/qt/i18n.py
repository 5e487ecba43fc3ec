"""English and Chinese UI text: a small translation table keyed by the English text.

Views call ``tr("Step forward")``; `set_language` switches at runtime and emits `language_changed`,
on which every view re-reads its texts (`retranslate`). Missing entries fall back to English.
"""
from __future__ import annotations

from gradviz.core.events import Signal

__all__ = ["tr", "set_language", "language", "LANGUAGES", "language_changed", "missing"]

LANGUAGES = {"en": "English", "zh": "中文"}

_ZH = {
    # menus
    "&File": "文件(&F)",
    "&View": "视图(&V)",
    "&Step": "单步(&S)",
    "&Model": "模型(&M)",
    "&Help": "帮助(&H)",
    "Theme": "主题",
    "Language": "语言",
    "Light": "浅色",
    "Dark": "深色",
    "Open model script…": "打开模型脚本…",
    "Model script": "模型脚本",
    "(model script)": "（模型脚本）",
    "Open recording…": "打开记录…",
    "Export…": "导出…",
    "Quit": "退出",
    "Fit graph": "适应窗口",
    "Zoom in": "放大",
    "Zoom out": "缩小",
    "Find node…": "查找节点…",
    "Top to bottom": "从上到下",
    "Roll reused layers": "折叠复用层",
    "Follow current node": "跟随当前节点",
    "Step forward": "前进一步",
    "Step back": "后退一步",
    "Jump to start": "跳到开头",
    "Jump to end": "跳到结尾",
    "Play / pause": "播放 / 暂停",
    "Jump to backward": "跳到反向传播",
    "Re-run": "重新运行",
    "Run checks": "运行检查",
    "Cancel": "取消",
    "About gradviz": "关于 gradviz",
    "Shortcuts": "快捷键",
    # docks
    "Model": "模型",
    "Inspector": "检查器",
    "Checks": "检查",
    "Gradient flow": "梯度流",
    "Accumulation": "累加",
    "Events": "事件",
    # labels
    "start": "开始",
    "forward": "前向",
    "backward": "反向",
    "Speed": "速度",
    "steps/s": "步/秒",
    "Step": "步",
    "Built-in model": "内置模型",
    "Parameters": "参数",
    "Recording…": "正在记录…",
    "Ready": "就绪",
    "Cancelled": "已取消",
    "not available in this build": "此版本不可用",
    "Dismiss": "关闭",
    "Search": "搜索",
    "no node matches": "没有匹配的节点",
    "Select a node to inspect it.": "选择一个节点以查看详情。",
    "op": "运算",
    "module": "模块",
    "use": "使用",
    "uses": "次使用",
    "backend": "后端",
    "source": "源代码",
    "shape": "形状",
    "dtype": "类型",
    "device": "设备",
    "forward value": "前向值",
    "grad_outputs (arrived)": "grad_outputs（到达的梯度）",
    "grad_inputs (sent on)": "grad_inputs（传出的梯度）",
    "saved tensors": "保存的张量",
    "waits for": "等待",
    "kind": "种类",
    "leaf": "叶子",
    "node": "节点",
    "contribution": "贡献",
    "from": "来自",
    "value": "值",
    "running sum": "累计和",
    "norm": "范数",
    "gradient norm per node (backward order)": "每个节点的梯度范数（反向顺序）",
    "gradient norm per time step (module use)": "每个时间步的梯度范数（模块使用）",
    "backward step": "反向步骤",
    "module use": "模块使用",
    "check": "检查",
    "what": "对象",
    "reference": "参考",
    "max abs err": "最大绝对误差",
    "max rel err": "最大相对误差",
    "tolerance": "容差",
    "result": "结果",
    "note": "说明",
    "Checks not run yet.": "尚未运行检查。",
    "Running checks…": "正在运行检查…",
    "checks": "项检查",
    "no value kept": "未保留数值",
    "Error": "错误",
    "Open": "打开",
    "Model scripts (*.py)": "模型脚本 (*.py)",
    "Recordings": "记录",
    "checked when the model runs": "运行模型时检查",
    "weight.grad builds up": "梯度逐步累加",
    "not yet": "尚未",
    "Laying out…": "正在布局…",
    "ready": "就绪",
    "saved": "已保存",
    "waits": "等待",
    "Restart to apply everywhere.": "重启后全部生效。",
}

_TABLES = {"en": {}, "zh": _ZH}
_current = "en"
language_changed = Signal()
_missing: set[str] = set()


def tr(text: str) -> str:
    """Return `text` (English) in the current language."""
    if _current == "en":
        return text
    out = _TABLES[_current].get(text)
    if out is None:
        _missing.add(text)
        return text
    return out


def language() -> str:
    """The current language code (``"en"`` or ``"zh"``)."""
    return _current


def set_language(code: str) -> None:
    """Switch the UI language to `code` and tell every view (`language_changed`)."""
    global _current
    if code not in _TABLES:
        raise ValueError(f"unknown language {code!r}: use one of {', '.join(_TABLES)}")
    if code != _current:
        _current = code
        language_changed.emit(code)


def missing() -> set[str]:
    """English texts asked for in a non-English language that have no entry (for tests)."""
    return set(_missing)
