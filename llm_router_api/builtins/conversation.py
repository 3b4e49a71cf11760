"""Built-ins ``conversation_with_model`` and ``extended_conversation_with_model``: one chat
call with the caller's history."""

from __future__ import annotations

from llm_router_api.builtins.base import Builtin, Plan, PromptLibrary
from llm_router_lib.data_models.builtin import ConversationRequest, ExtendedConversationRequest


class ConversationWithModel(Builtin):
    request_model = ConversationRequest

    def plan(self, request: ConversationRequest, prompts: PromptLibrary, language: str) -> Plan:
        system = self.system_prompt(prompts, language)
        if isinstance(request, ExtendedConversationRequest) and request.system_prompt:
            system = request.system_prompt
        history = [m.model_dump() for m in request.historical_messages]
        messages = [{"role": "system", "content": system}, *history,
                    {"role": "user", "content": request.user_last_statement}]
        return self.single(request, messages)


class ExtendedConversationWithModel(ConversationWithModel):
    request_model = ExtendedConversationRequest
