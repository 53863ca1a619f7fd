//! `#[morgana::main]`: turns `async fn main(dev: Device, ...)` into a
//! unikernel entry point.
//!
//! From the parameters it generates, at compile time:
//!
//! * the device declarations: each parameter's type says which platform
//!   devices it needs (`<T as morgana::Device>::NEEDS`), its name (or a
//!   `#[name = "..."]` / `#[names("a", "b")]` attribute) names them;
//! * the Solo5 manifest note (`.note.solo5.manifest`) built from those
//!   declarations by `const` evaluation, so an invalid or duplicate name is
//!   a compile error and a manifest is never written by hand;
//! * on the bare platforms, the ABI note (`.note.solo5.abi`) and the
//!   `PT_INTERP` contents that stop the host from executing the image;
//! * the boot-time code that connects every device in order and runs the
//!   function on the scheduler, its result becoming the exit status;
//! * on Linux (the unix platform), the C `main` that starts it all.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, FnArg, ItemFn, Lit, LitStr, Meta, Pat, Token, Type, parse_macro_input};

/// Marks the `async fn` a unikernel runs; its parameters are its devices.
///
/// ```no_run
/// # #![no_std]
/// # #![no_main]
/// #[morgana::main]
/// async fn main(service: morgana::Net, #[name = "disk0"] storage: morgana::Block) -> u8 {
///     0
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[morgana::main] takes no arguments")
            .to_compile_error()
            .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    match expand(func) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Param {
    ident: syn::Ident,
    ty: Type,
    names: Option<Vec<LitStr>>,
}

fn names_of(attrs: &[syn::Attribute]) -> syn::Result<Option<Vec<LitStr>>> {
    let mut found = None;
    for a in attrs {
        let names = if a.path().is_ident("name") {
            match &a.meta {
                Meta::NameValue(nv) => match &nv.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => vec![s.clone()],
                    v => return Err(syn::Error::new_spanned(v, "expected #[name = \"...\"]")),
                },
                m => return Err(syn::Error::new_spanned(m, "expected #[name = \"...\"]")),
            }
        } else if a.path().is_ident("names") {
            let list = a.meta.require_list()?;
            Punctuated::<LitStr, Token![,]>::parse_terminated
                .parse2(list.tokens.clone())?
                .into_iter()
                .collect()
        } else {
            return Err(syn::Error::new_spanned(
                a,
                "only #[name = \"...\"] and #[names(...)] are allowed on device parameters",
            ));
        };
        if found.replace(names).is_some() {
            return Err(syn::Error::new_spanned(
                a,
                "a device's names are given once",
            ));
        }
    }
    Ok(found)
}

fn expand(mut func: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            "#[morgana::main] needs an `async fn`",
        ));
    }
    if !func.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &func.sig.generics,
            "#[morgana::main] functions cannot be generic",
        ));
    }
    let mut params = Vec::new();
    for input in func.sig.inputs.iter_mut() {
        let FnArg::Typed(pt) = input else {
            return Err(syn::Error::new_spanned(input, "unexpected `self`"));
        };
        let Pat::Ident(pi) = &*pt.pat else {
            return Err(syn::Error::new_spanned(
                &pt.pat,
                "device parameters must be plain names (`service: Net`)",
            ));
        };
        let names = names_of(&pt.attrs)?;
        pt.attrs.clear();
        params.push(Param {
            ident: pi.ident.clone(),
            ty: (*pt.ty).clone(),
            names,
        });
    }

    let name = &func.sig.ident;
    let mut name_consts = Vec::new();
    let mut declares = Vec::new();
    let mut offloads = Vec::new();
    let mut connects = Vec::new();
    let mut args = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let ty = &p.ty;
        let names_const = format_ident!("__MORGANA_NAMES_{}", i);
        let needs = quote!(<#ty as ::morgana::Device>::NEEDS);
        let names = match &p.names {
            Some(list) => quote!(&[#(#list),*]),
            None => {
                let default = p.ident.to_string().trim_start_matches('_').to_string();
                let default = LitStr::new(&default, p.ident.span());
                quote!(::morgana::__private::default_names(#needs, &[#default]))
            }
        };
        name_consts.push(quote! {
            const #names_const: &[&str] = #names;
        });
        declares.push(quote! {
            let out = ::morgana::__private::declare(out, at, #needs, #names_const);
            let at = at + #needs.len();
        });
        offloads.push(quote! {
            let mask = ::morgana::__private::offload_mask(
                mask, at, #needs, <#ty as ::morgana::Device>::NET_OFFLOAD,
            );
            let at = at + #needs.len();
        });
        let var = format_ident!("__morgana_device_{}", i);
        connects.push(quote! {
            let #var: #ty = match <#ty as ::morgana::Device>::connect(#names_const).await {
                ::core::result::Result::Ok(d) => d,
                ::core::result::Result::Err(e) => ::morgana::__private::connect_failed(e),
            };
        });
        args.push(var);
    }
    let tys: Vec<&Type> = params.iter().map(|p| &p.ty).collect();

    Ok(quote! {
        #func

        #(#name_consts)*

        const __MORGANA_DEVICES: usize = 0 #(+ <#tys as ::morgana::Device>::NEEDS.len())*;

        const __MORGANA_DECL_ARRAY: [::morgana::__private::DeviceDecl; __MORGANA_DEVICES] = {
            let out = [::morgana::__private::EMPTY_DECL; __MORGANA_DEVICES];
            let at = 0usize;
            #(#declares)*
            let _ = at;
            out
        };

        #[unsafe(no_mangle)]
        static __MORGANA_DECLS: &[::morgana::__private::DeviceDecl] = &__MORGANA_DECL_ARRAY;

        // The net devices that take virtio-net headers and offloads, asked
        // of the tender (morgana_abi::offload; Solo5's tenders ignore it).
        #[used]
        #[unsafe(no_mangle)]
        #[cfg_attr(target_os = "none", unsafe(link_section = ".morgana.offload"))]
        static __MORGANA_OFFLOAD: ::morgana::__private::OffloadRequest =
            ::morgana::__private::OffloadRequest::new({
                let mask = 0u64;
                let at = 0usize;
                #(#offloads)*
                let _ = at;
                mask
            });

        #[used]
        #[unsafe(link_section = ".note.solo5.manifest")]
        static __MORGANA_MANIFEST: ::morgana::__private::MftNote<{ __MORGANA_DEVICES + 1 }> =
            ::morgana::__private::MftNote::new(&__MORGANA_DECL_ARRAY);

        #[cfg(target_os = "none")]
        #[used]
        #[unsafe(link_section = ".note.solo5.abi")]
        static __MORGANA_ABI_NOTE: ::morgana::__private::AbiNote = ::morgana::__private::ABI_NOTE;

        #[cfg(target_os = "none")]
        #[used]
        #[unsafe(link_section = ".interp")]
        static __MORGANA_INTERP: [u8; 24] = *::morgana::abi::note::INTERP;

        // In its own scope: the program's function may be called `main` too.
        #[cfg(target_os = "linux")]
        const _: () = {
            #[unsafe(no_mangle)]
            extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
                ::morgana::__private::unix_main()
            }
        };

        #[unsafe(no_mangle)]
        fn __morgana_main() -> i32 {
            ::morgana::__private::block_on(async {
                #(#connects)*
                ::morgana::Termination::report(#name(#(#args),*).await)
            })
        }
    })
}
