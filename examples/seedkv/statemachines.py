import json

from consensus.registry import register


@register("seedkv")
class KvCallback:
    def __init__(self):
        self.kv = {}

    def callback(self, msg: str):
        bean = json.loads(msg)  # {"type": "put"|"get"|"delete", "key": ..., "value": ...}
        if bean["type"] == "get":
            return self.kv.get(bean["key"])
        if bean["type"] == "put":
            self.kv[bean["key"]] = bean["value"]
        elif bean["type"] == "delete":
            self.kv.pop(bean["key"], None)
        return "ok"
